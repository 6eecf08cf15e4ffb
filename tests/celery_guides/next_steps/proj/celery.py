# Celery's "Next steps" proj/celery.py, with only the import and the URLs changed.
from sqlq import Celery

app = Celery('proj',
             broker='postgresql://localhost/proj',
             backend='db+postgresql://localhost/proj',
             include=['proj.tasks'])

# Optional configuration, see the application user guide.
app.conf.update(
    result_expires=3600,
)

if __name__ == '__main__':
    app.start()
