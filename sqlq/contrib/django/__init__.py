"""sqlq in a Django project: add ``"sqlq.contrib.django"`` to ``INSTALLED_APPS``.

What it brings: the ``manage.py sqlq ...`` command (the ``sqlq`` command line for the project's
app), read-only admin pages over sqlq's tables (``models.py`` are ``managed = False``: sqlq's own
migrations stay the only owner of its schema) and a ``django.tasks`` backend (``tasks.py``). What
works without it being installed: ``autodiscover_tasks()`` over ``INSTALLED_APPS``
(``discovery.py``), the database URL taken from ``DATABASES['default']`` and
``connection=django.db.connection`` (``database.py``).
"""
