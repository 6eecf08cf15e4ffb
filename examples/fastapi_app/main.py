"""A FastAPI app whose request writes a row and enqueues its job in one transaction (SQLAlchemy's
``AsyncSession``): the job exists exactly when the row does.

    uvicorn examples.fastapi_app.main:api          # the web app
    sqlq -A examples.fastapi_app.tasks worker      # the worker

The database is SQLQ_DATABASE_URL (else DATABASE_URL, else the local server's ``test``); the app's
own table goes in the schema APP_DB_SCHEMA names (default ``public``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from examples.fastapi_app.tasks import app as sqlq_app
from examples.fastapi_app.tasks import send_welcome

URL = os.environ.get("SQLQ_DATABASE_URL") or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = os.environ.get("APP_DB_SCHEMA", "public")

engine = create_async_engine(URL.replace("postgresql://", "postgresql+psycopg://", 1),
                             connect_args={"options": f"-c search_path={SCHEMA}"})
Session = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    sqlq_app.migrate()  # sqlq's tables (idempotent)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS signups (id serial PRIMARY KEY, email text NOT NULL)"))
    yield
    await engine.dispose()


api = FastAPI(lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises
    (``scope="function"`` where it is used: before the response is sent, so a client never sees a
    job id whose transaction then failed)."""
    async with Session() as s, s.begin():
        yield s


class Signup(BaseModel):
    email: str
    fail: bool = False


@api.post("/signups", status_code=201)
async def create_signup(signup: Signup, db: AsyncSession = Depends(session, scope="function")) -> dict[str, Any]:
    signup_id = (await db.execute(text("INSERT INTO signups (email) VALUES (:e) RETURNING id"),
                                  {"e": signup.email})).scalar_one()
    # in the request's transaction: rolled back with the row if anything below raises
    job = await send_welcome.aapply_async((signup_id, signup.email), connection=db)
    if signup.fail:
        raise HTTPException(status_code=409, detail="email already taken")  # no row, no job
    return {"signup": signup_id, "job": job.id}


@api.get("/jobs/{job_id}")
def job_status(job_id: str) -> dict[str, Any]:
    """A plain ``def``: FastAPI runs it in a thread, where the blocking result read belongs."""
    result = sqlq_app.AsyncResult(job_id)
    return {"state": result.state, "result": result.result if result.ready() else None}
