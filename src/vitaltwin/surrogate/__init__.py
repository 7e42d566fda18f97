"""Surrogates bridging fidelities."""
