"""The FastAPI example's tasks: ``sqlq -A examples.fastapi_app.tasks worker`` runs them."""

from __future__ import annotations

from sqlq import App

app = App("examples.fastapi_app.tasks")


@app.task
def send_welcome(signup_id: int, email: str) -> str:
    return f"welcome mail for signup {signup_id} sent to {email}"
