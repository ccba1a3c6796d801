"""Tests of the IRC plug against a real ngircd."""
