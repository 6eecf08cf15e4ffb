# Celery's "First steps with Celery" tasks.py, with only the import and the broker URL changed
# (its backend stays 'rpc://', which sqlq says it does not use: results are rows in PostgreSQL).
from sqlq import Celery

app = Celery('tasks', backend='rpc://', broker='postgresql://localhost/proj')

@app.task
def add(x, y):
    return x + y
