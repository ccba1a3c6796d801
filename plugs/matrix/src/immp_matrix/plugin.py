"""Registers the Matrix plug with IMMP's plugin discovery (imported when a config uses it)."""

import immp


@immp.hookimpl
def register_plugs(register):
    register("matrix", "immp_matrix.plug.MatrixPlug")
