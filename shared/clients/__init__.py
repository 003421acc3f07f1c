"""Configured clients for the backing services; services never build raw clients themselves."""
