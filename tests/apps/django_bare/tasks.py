from django.tasks import task


@task
def shout(word: str) -> str:
    return word.upper()
