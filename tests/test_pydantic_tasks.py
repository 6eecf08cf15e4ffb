"""``@app.task(pydantic=True)`` as in Celery 5.5's tasks guide ("Argument validation with
Pydantic"): arguments annotated with a model arrive validated into the model (from the JSON dict a
job carries), a returned model of the return annotation's class is dumped with
``model_dump(**pydantic_dump_kwargs)``; ``pydantic_strict`` and ``pydantic_context`` reach
``model_validate``. In a real worker and in eager mode; the caller may pass the model itself."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import pytest
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from sqlq import App
from sqlq.errors import TaskDefinitionError
from sqlq.testing import eager


class ArgModel(BaseModel):
    value: int


class ReturnModel(BaseModel):
    value: str


class Other(BaseModel):
    value: str


class Secretive(BaseModel):
    name: str
    secret: str = Field(alias="hidden")


class Contextual(BaseModel):
    value: int

    @field_validator("value")
    @classmethod
    def scaled(cls, value: int, info: ValidationInfo) -> int:
        context = info.context or {}
        assert context["celery_task_name"] == "tests.pydantic.contextual" and context["celery_app"] is not None
        return value * context["scale"]


def _define(app: App) -> dict:
    @app.task(pydantic=True, name="tests.pydantic.x")
    def x(arg: ArgModel) -> ReturnModel:
        assert isinstance(arg, ArgModel)  # args type hinted as a model are converted
        return ReturnModel(value=f"example: {arg.value}")

    @app.task(pydantic=True, name="tests.pydantic.optional")
    def optional(arg: Optional[ArgModel] = None) -> Optional[ReturnModel]:  # noqa: UP045 - the guide's spelling
        if arg is None:
            return None
        return ReturnModel(value=f"example: {arg.value}")

    @app.task(pydantic=True, pydantic_strict=True, name="tests.pydantic.strict")
    def strict(arg: ArgModel) -> int:
        return arg.value

    @app.task(pydantic=True, pydantic_context={"scale": 10}, name="tests.pydantic.contextual")
    def contextual(arg: Contextual) -> int:
        return arg.value

    @app.task(pydantic=True, pydantic_dump_kwargs={"exclude": {"secret"}}, name="tests.pydantic.dumped")
    def dumped(name: str) -> Secretive:
        return Secretive(name=name, hidden="s3cret")

    @app.task(pydantic=True, name="tests.pydantic.mismatch")
    def mismatch() -> ReturnModel:
        return Other(value="not the annotation's class")  # type: ignore[return-value]

    @app.task(pydantic=True, bind=True, name="tests.pydantic.bound")
    def bound(self, arg: ArgModel, times: int = 2) -> ReturnModel:
        return ReturnModel(value=f"{self.name}: {arg.value * times}")

    @app.task(pydantic=True, name="tests.pydantic.keyword_only")
    def keyword_only(*, arg: ArgModel, plain: dict | None = None) -> int:
        assert isinstance(arg, ArgModel) and (plain is None or isinstance(plain, dict))
        return arg.value

    @app.task(pydantic=True, name="tests.pydantic.coroutine")
    async def coroutine(arg: ArgModel) -> ReturnModel:
        return ReturnModel(value=f"async {arg.value}")

    return locals()


def _check(tasks: dict) -> None:
    x = tasks["x"]
    assert x.delay({"value": 1}).get(timeout=30) == {"value": "example: 1"}  # the guide's call
    assert x.delay(ArgModel(value=2)).get(timeout=30) == {"value": "example: 2"}  # the model itself
    assert x.apply_async(kwargs={"arg": ArgModel(value=3)}).get(timeout=30) == {"value": "example: 3"}
    assert tasks["optional"].delay().get(timeout=30) is None
    assert tasks["optional"].delay({"value": 4}).get(timeout=30) == {"value": "example: 4"}
    assert tasks["optional"].delay(None).get(timeout=30) is None
    with pytest.raises(Exception, match="ArgModel"):  # None for a model that is not Optional: refused
        x.delay(None).get(timeout=30)
    with pytest.raises(Exception, match="value") as bad:
        x.delay({"value": "not a number"}).get(timeout=30)
    assert "ValidationError" in type(bad.value).__name__ or "int_parsing" in str(bad.value)
    assert tasks["strict"].delay({"value": 5}).get(timeout=30) == 5
    with pytest.raises(Exception, match="valid integer"):
        tasks["strict"].delay({"value": "5"}).get(timeout=30)  # lax mode would have taken it
    assert tasks["contextual"].delay({"value": 3}).get(timeout=30) == 30
    assert tasks["dumped"].delay("n").get(timeout=30) == {"name": "n"}
    with pytest.raises(Exception, match="Other"):  # not the annotation's class: not dumped, not serializable
        tasks["mismatch"].delay().get(timeout=30)
    assert tasks["bound"].delay({"value": 2}, times=3).get(timeout=30) == {"value": "tests.pydantic.bound: 6"}
    assert tasks["coroutine"].delay({"value": 7}).get(timeout=30) == {"value": "async 7"}
    assert tasks["keyword_only"].delay(arg={"value": 9}, plain={"value": 1}).get(timeout=30) == 9


def test_a_real_worker_validates_and_dumps(app, run_worker):
    tasks = _define(app)
    with run_worker(app, pool="threads", concurrency=2):
        _check(tasks)


def test_eager_mode_validates_and_dumps(app):
    tasks = _define(app)
    with eager(app, propagates=False):
        _check(tasks)
    # a plain call goes through the same wrapper, as in Celery
    assert tasks["x"](ArgModel(value=1)) == {"value": "example: 1"}
    assert tasks["x"]({"value": 1}) == {"value": "example: 1"}
    assert tasks["x"].apply((ArgModel(value=8),)).get() == {"value": "example: 8"}


def test_pydantic_options_need_pydantic_true():
    app = App("tests.pydantic_options", set_as_current=False)
    with pytest.raises(TaskDefinitionError, match=r"pydantic_strict=\.\.\.\) for 'tests.p' needs pydantic=True"):
        app.task(pydantic_strict=True, name="tests.p")(lambda arg: arg)
    with pytest.raises(TaskDefinitionError, match="pydantic_context= of task 'tests.q' must be a dict"):
        app.task(pydantic=True, pydantic_context=["no"], name="tests.q")(lambda arg: arg)


def test_without_pydantic_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydantic", None)  # what `import pydantic` sees when it is not installed
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pydantic")
    app = App("tests.no_pydantic", set_as_current=False)
    with pytest.raises(TaskDefinitionError, match=r"needs pydantic, which is not installed; pip install "
                                                  r"'sqlq-pg\[pydantic\]'"):
        app.task(pydantic=True, name="tests.nopyd")(lambda arg: arg)
