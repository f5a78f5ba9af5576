"""The example app of `make demo`."""
