# Celery's "First steps with Celery" celeryconfig.py, with only the broker URL changed.
broker_url = 'postgresql://localhost/proj'
result_backend = 'db+postgresql://localhost/proj'

task_serializer = 'json'
result_serializer = 'json'
accept_content = ['json']
timezone = 'Europe/Oslo'
enable_utc = True

task_routes = {
    'tasks.add': 'low-priority',
}

task_annotations = {
    'tasks.add': {'rate_limit': '10/m'}
}
