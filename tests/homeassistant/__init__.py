"""Support for the tests against a real Home Assistant (installed, cached, started by the tests)."""
