"""A Python file that defines no probe."""

VALUE = 1
