"""A Django project that uses sqlq only through django.tasks (no celery.py, no sqlq import):
tests/test_django_tasks.py runs its worker with ``manage.py``-style ``django-admin sqlq``."""
