"""A Flask app whose request writes a row and enqueues its job in one transaction (a SQLAlchemy
Connection): the job exists exactly when the row does.

    flask --app examples.flask_app.app run          # the web app
    sqlq -A examples.flask_app.tasks worker         # the worker

The database is SQLQ_DATABASE_URL (else DATABASE_URL, else the local server's ``test``); the app's
own table goes in the schema APP_DB_SCHEMA names (default ``public``).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, request
from sqlalchemy import create_engine, text

from examples.flask_app.tasks import app as sqlq_app
from examples.flask_app.tasks import send_welcome


def create_app() -> Flask:
    url = os.environ.get("SQLQ_DATABASE_URL") or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    schema = os.environ.get("APP_DB_SCHEMA", "public")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                           connect_args={"options": f"-c search_path={schema}"})
    sqlq_app.migrate()  # sqlq's tables (idempotent)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS signups (id serial PRIMARY KEY, email text NOT NULL)"))

    web = Flask(__name__)

    @web.post("/signups")
    def create_signup() -> tuple[dict[str, Any], int]:
        body = request.get_json()
        with engine.begin() as conn:  # one transaction: committed at the end of the block
            signup_id = conn.execute(text("INSERT INTO signups (email) VALUES (:e) RETURNING id"),
                                     {"e": body["email"]}).scalar_one()
            job = send_welcome.apply_async((signup_id, body["email"]), connection=conn)
            if body.get("fail"):
                abort(409, "email already taken")  # raises: the row and the job roll back
        return {"signup": signup_id, "job": job.id}, 201

    @web.get("/jobs/<job_id>")
    def job_status(job_id: str) -> dict[str, Any]:
        result = sqlq_app.AsyncResult(job_id)
        return {"state": result.state, "result": result.result if result.ready() else None}

    return web
