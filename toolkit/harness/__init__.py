"""The one harness: every trial of ``diagnose`` and of the pytest plugin runs through it.

- ``proc``: child environment, signals, atomic writes, stacks of a live process, killing a tree.
- ``child``: the worker side, light enough to run under another interpreter (``--python``).
- ``worker``: what one worker process does in a trial (threads started together, digests).
- ``launch``: fork server, fresh interpreters, direct forks, and a pool of fork servers.
- ``states``: what the probe's threads are doing, sampled from /proc without stopping them.
- ``trial``: run one trial (or a probe's prepare) and gather a ``TrialRun``.

Nothing here is imported by ``threadprobe/__init__``: a worker pays only for what it uses.
"""
