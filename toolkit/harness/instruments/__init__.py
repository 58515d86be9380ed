"""harness/instruments"""
