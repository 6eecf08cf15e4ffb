"""``make chaos``: scripted failure scenarios against a private PostgreSQL cluster.

One module per scenario (crash, transactional, outage, poison, beat), the shared machinery in
``lab`` (cluster, processes, SQL) and ``storm`` (the kill/restart timeline crash and transactional
share), the tasks in ``app``, the runner in ``run``. See README.md in this directory.
"""
