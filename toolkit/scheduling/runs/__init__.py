"""The processing runner: the Met Office wind study's experiments on any dask scheduler.

``data`` writes UM-like x_wind/y_wind files, ``wind`` derives wind speed and direction and their
variances over time, ``load`` measures parallel metadata-only loading, ``schedulers`` runs a
computation anywhere from synchronous to a SLURM cluster, and ``bench`` compares them all.
"""
