"""Built-in probes, one module per dependency, registered under ``threadprobe.probes`` exactly
as a third party's would be. Importing a probe module never imports the library it tests."""
