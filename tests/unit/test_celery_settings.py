"""Celery's setting names without a server: every name in Celery's configuration reference is
decided (renamed to a sqlq setting, without effect here, or not supported yet), old upper-case names
and namespaces are read, broker/backend URLs become the database URL, each ignored setting warns
once per app, and task_annotations and Celery's App constructor behave as Celery's do."""

from __future__ import annotations

import datetime as dt
import sys
import types
import warnings
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from sqlq import App, Celery, Task, serialization
from sqlq import celery_settings as cs
from sqlq.config import DEFAULTS, Settings, naive_timezone
from sqlq.errors import ConfigurationError, DatabaseURLError, SqlqCompatibilityWarning

#: Every setting Celery 5.5 has (celery/app/defaults.py, as its configuration reference lists them).
CELERY_5_5_SETTINGS = (
    'accept_content', 'arangodb_backend_settings', 'azureblockblob_base_path',
    'azureblockblob_connection_timeout', 'azureblockblob_container_name', 'azureblockblob_read_timeout',
    'azureblockblob_retry_increment_base', 'azureblockblob_retry_initial_backoff_sec',
    'azureblockblob_retry_max_attempts', 'beat_cron_starting_deadline', 'beat_max_loop_interval',
    'beat_schedule', 'beat_schedule_filename', 'beat_scheduler', 'beat_sync_every',
    'broker_channel_error_retry', 'broker_connection_max_retries', 'broker_connection_retry',
    'broker_connection_retry_on_startup', 'broker_connection_timeout', 'broker_failover_strategy',
    'broker_heartbeat', 'broker_heartbeat_checkrate', 'broker_host', 'broker_login_method',
    'broker_native_delayed_delivery_queue_type', 'broker_password', 'broker_pool_acquire_timeout',
    'broker_pool_limit', 'broker_port', 'broker_read_url', 'broker_transport',
    'broker_transport_options', 'broker_url', 'broker_use_ssl', 'broker_user', 'broker_vhost',
    'broker_write_url', 'cache_backend', 'cache_backend_options', 'cassandra_auth_kwargs',
    'cassandra_auth_provider', 'cassandra_bundle_path', 'cassandra_entry_ttl', 'cassandra_keyspace',
    'cassandra_options', 'cassandra_port', 'cassandra_read_consistency', 'cassandra_servers',
    'cassandra_table', 'cassandra_write_consistency', 'control_exchange', 'control_queue_durable',
    'control_queue_exclusive', 'control_queue_expires', 'control_queue_ttl',
    'cosmosdbsql_collection_name', 'cosmosdbsql_consistency_level', 'cosmosdbsql_database_name',
    'cosmosdbsql_max_retry_attempts', 'cosmosdbsql_max_retry_wait_time', 'couchbase_backend_settings',
    'database_create_tables_at_setup', 'database_engine_callback', 'database_engine_options',
    'database_short_lived_sessions', 'database_table_names', 'database_table_schemas', 'database_url',
    'elasticsearch_max_retries', 'elasticsearch_retry_on_timeout', 'elasticsearch_save_meta_as_text',
    'elasticsearch_timeout', 'enable_utc', 'event_exchange', 'event_queue_durable',
    'event_queue_exclusive', 'event_queue_expires', 'event_queue_prefix', 'event_queue_ttl',
    'event_serializer', 'gcs_base_path', 'gcs_bucket', 'gcs_project', 'gcs_ttl', 'imports', 'include',
    'mongodb_backend_settings', 'redis_backend_use_ssl', 'redis_db', 'redis_host',
    'redis_max_connections', 'redis_password', 'redis_port', 'redis_retry_on_timeout',
    'redis_socket_connect_timeout', 'redis_socket_keepalive', 'redis_socket_timeout', 'redis_username',
    'result_accept_content', 'result_backend', 'result_backend_always_retry',
    'result_backend_base_sleep_between_retries_ms', 'result_backend_max_retries',
    'result_backend_max_sleep_between_retries_ms', 'result_backend_transport_options',
    'result_cache_max', 'result_chord_join_timeout', 'result_chord_retry_interval',
    'result_compression', 'result_exchange', 'result_exchange_type', 'result_expires',
    'result_extended', 'result_persistent', 'result_serializer', 's3_access_key_id', 's3_base_path',
    's3_bucket', 's3_endpoint_url', 's3_region', 's3_secret_access_key', 'security_cert_store',
    'security_certificate', 'security_digest', 'security_key', 'security_key_password',
    'task_acks_late', 'task_acks_on_failure', 'task_acks_on_failure_or_timeout', 'task_acks_on_timeout',
    'task_allow_error_cb_on_chord_header', 'task_always_eager', 'task_annotations', 'task_compression',
    'task_create_missing_queue_exchange_type', 'task_create_missing_queue_type',
    'task_create_missing_queues', 'task_default_delivery_mode', 'task_default_exchange',
    'task_default_exchange_type', 'task_default_priority', 'task_default_queue',
    'task_default_queue_type', 'task_default_rate_limit', 'task_default_routing_key',
    'task_eager_propagates', 'task_ignore_result', 'task_inherit_parent_priority', 'task_protocol',
    'task_publish_retry', 'task_publish_retry_policy', 'task_queue_max_priority', 'task_queues',
    'task_reject_on_worker_lost', 'task_remote_tracebacks', 'task_routes', 'task_send_sent_event',
    'task_serializer', 'task_soft_time_limit', 'task_store_eager_result',
    'task_store_errors_even_if_ignored', 'task_time_limit', 'task_track_started', 'timezone',
    'worker_agent', 'worker_autoscaler', 'worker_cancel_long_running_tasks_on_connection_loss',
    'worker_concurrency', 'worker_consumer', 'worker_deduplicate_successful_tasks',
    'worker_detect_quorum_queues', 'worker_direct', 'worker_disable_prefetch',
    'worker_disable_rate_limits', 'worker_enable_prefetch_count_reduction',
    'worker_enable_remote_control', 'worker_enable_soft_shutdown_on_idle', 'worker_eta_task_limit',
    'worker_hijack_root_logger', 'worker_log_color', 'worker_log_format', 'worker_lost_wait',
    'worker_max_memory_per_child', 'worker_max_tasks_per_child', 'worker_pool', 'worker_pool_putlocks',
    'worker_pool_restarts', 'worker_prefetch_multiplier', 'worker_proc_alive_timeout',
    'worker_redirect_stdouts', 'worker_redirect_stdouts_level', 'worker_send_task_events',
    'worker_soft_shutdown_timeout', 'worker_state_db', 'worker_task_log_format', 'worker_timer',
    'worker_timer_precision'
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SQLQ_* variable from the caller's shell decides these tests."""
    for key in ("SQLQ_SCHEMA", "SQLQ_DEFAULT_QUEUE", "SQLQ_DATABASE_URL", "DATABASE_URL", "SQLQ_TIMEZONE",
                "SQLQ_ENABLE_UTC", "SQLQ_ACCEPT_CONTENT"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SqlqCompatibilityWarning)
        yield


def _warned(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, SqlqCompatibilityWarning)]


# --- the table of names ----------------------------------------------------------------------

def test_every_celery_setting_is_decided_once():
    assert set(CELERY_5_5_SETTINGS) == cs.CELERY_NAMES
    kinds = [set(cs.RENAMED), set(cs.SAME_NAME), set(cs.NO_MEANING), set(cs.NOT_YET)]
    assert sum(len(k) for k in kinds) == len(cs.CELERY_NAMES)  # no name in two kinds
    assert set(cs.SAME_NAME) <= set(DEFAULTS) and set(cs.RENAMED.values()) <= set(DEFAULTS)
    assert all(reason.strip() for reason in [*cs.NO_MEANING.values(), *cs.NOT_YET.values()])


@pytest.mark.parametrize(("old", "new"), [
    ("CELERY_ALWAYS_EAGER", "task_always_eager"), ("BROKER_URL", "broker_url"),
    ("CELERYD_CONCURRENCY", "worker_concurrency"), ("CELERYBEAT_SCHEDULE", "beat_schedule"),
    ("CELERY_RESULT_BACKEND", "result_backend"), ("CELERY_TASK_SERIALIZER", "task_serializer"),
    ("CELERY_TASK_RESULT_EXPIRES", "result_expires"), ("CELERY_EAGER_PROPAGATES_EXCEPTIONS", "task_eager_propagates"),
    ("CELERYD_TASK_TIME_LIMIT", "task_time_limit"), ("CELERY_DEFAULT_QUEUE", "task_default_queue"),
    ("CELERY_RESULT_DBURI", "database_url"), ("CELERY_ACCEPT_CONTENT", "accept_content"),
    ("CELERY_TIMEZONE", "timezone"), ("ENABLE_UTC", "enable_utc"), ("CELERY_IMPORTS", "imports"),
    ("CELERYD_PREFETCH_MULTIPLIER", "worker_prefetch_multiplier"), ("CELERY_ROUTES", "task_routes"),
    ("CELERY_SEND_EVENTS", "worker_send_task_events"), ("RESULT_ACCEPT_CONTENT", "result_accept_content"),
])
def test_old_upper_case_names_are_celerys(old, new):
    assert cs.old_names()[old] == new
    assert cs.celery_name(old) == new


def test_accept_content_names_agree_with_the_serializers():
    for name in ("json", "msgpack", "pickle"):
        assert cs.serializer_name(name) == name
        assert cs.serializer_name(serialization.content_type_for(name)) == name
    assert cs.serializer_name("yaml") is None and cs.serializer_name("application/x-yaml") is None


# --- settings under Celery's names -----------------------------------------------------------

def test_celery_names_set_sqlq_settings(no_warnings):
    conf = Settings(task_default_queue="celery", beat_max_loop_interval=5, task_serializer="json",
                    CELERY_ALWAYS_EAGER=True, CELERYD_CONCURRENCY=3, worker_prefetch_multiplier=1)
    assert (conf.default_queue, conf.task_default_queue) == ("celery", "celery")
    assert (conf.beat_interval, conf.task_always_eager, conf.worker_concurrency) == (5, True, 3)
    conf.task_default_queue = "jobs"  # writable under either name
    assert conf.default_queue == "jobs"
    conf.update(DEFAULT_QUEUE="again")  # a sqlq name in a settings module's capitals
    assert conf.default_queue == "again"


@pytest.mark.parametrize("url", [
    "postgresql://u@h:5433/db", "postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db",
    "db+postgresql://u@h:5433/db", "db+postgresql+psycopg2://u@h:5433/db",
])
def test_broker_and_backend_urls_in_celerys_spellings_are_the_database_url(url, no_warnings):
    assert Settings(broker_url=url).database_url == "postgresql://u@h:5433/db"
    assert Settings(result_backend=url).database_url == "postgresql://u@h:5433/db"
    assert Settings(broker_url=url, result_backend="postgresql://other@h:5433/db").broker_url == \
        "postgresql://other@h:5433/db"  # the same database (another login is fine)


def test_a_broker_that_is_not_postgresql_is_an_error_saying_what_to_set():
    for url in ("amqp://guest@localhost//", "redis://localhost:6379/0", "pyamqp://"):
        with pytest.raises(ConfigurationError, match=r"not PostgreSQL.*broker_url='postgresql://.*SQLQ_DATABASE_URL"):
            Settings(broker_url=url)
    with pytest.raises(ConfigurationError, match=r"broker='postgresql://"):
        Celery("proj", broker="amqp://guest@localhost//", set_as_current=False)


def test_broker_and_backend_naming_different_databases_is_an_error():
    with pytest.raises(ConfigurationError, match="name different databases"):
        Settings(broker_url="postgresql://h/one", result_backend="db+postgresql://h/two")
    with pytest.raises(ConfigurationError, match="name different databases"):
        Celery("proj", broker="postgresql://h/one", backend="postgresql://h:5433/one", set_as_current=False)


def test_a_broken_postgresql_url_says_what_is_wrong():
    with pytest.raises(DatabaseURLError, match="names no database"):
        Settings(broker_url="postgresql://host")


def test_a_result_backend_that_is_not_postgresql_warns_once():
    with pytest.warns(SqlqCompatibilityWarning) as record:
        conf = Settings(result_backend="rpc://")
        conf.result_backend = "redis://localhost"
    messages = _warned(record)
    assert len(messages) == 1 and "results as rows" in messages[0]
    assert conf.database_url is None


def test_a_setting_without_meaning_warns_once_per_app_and_is_readable_back():
    with pytest.warns(SqlqCompatibilityWarning) as record:
        one = Settings(broker_transport_options={"visibility_timeout": 3600})
        one.broker_transport_options = {"visibility_timeout": 60}
        two = Settings(broker_transport_options={})
    messages = _warned(record)
    assert len(messages) == 2
    assert "'broker_transport_options' has no effect in sqlq" in messages[0] and "PostgreSQL" in messages[0]
    assert one.broker_transport_options == {"visibility_timeout": 60} and two.broker_transport_options == {}


def test_a_setting_not_supported_yet_warns_saying_so_and_what_instead():
    with pytest.warns(SqlqCompatibilityWarning, match=r"'worker_disable_prefetch' is ignored: not supported yet.*"
                                                      r"worker_prefetch_multiplier=1"):
        Settings(worker_disable_prefetch=True)


def test_worker_max_memory_per_child_is_celerys_setting_under_its_old_name_too():
    assert Settings(CELERYD_MAX_MEMORY_PER_CHILD=200_000).worker_max_memory_per_child == 200_000


def test_the_warning_points_at_the_line_that_gave_the_setting():
    with pytest.warns(SqlqCompatibilityWarning) as record:
        App("proj", broker_heartbeat=10, set_as_current=False)
    assert record[0].filename == __file__


def test_an_unknown_name_is_still_an_error_with_the_closest_names():
    with pytest.raises(ConfigurationError, match=r"unknown sqlq setting 'task_serialiser'; did you mean 'task_serializer'"):
        Settings(task_serialiser="json")
    with pytest.raises(ConfigurationError, match="unknown sqlq setting 'CELERY_ALWAYS_EAGR'"):
        Settings(CELERY_ALWAYS_EAGR=True)


def test_accept_content_takes_content_types_and_drops_what_sqlq_cannot_decode():
    assert Settings(accept_content=["application/json", "msgpack", "json"]).accept_content == ["json", "msgpack"]
    assert Settings(accept_content="application/x-python-serialize").accept_content == ["pickle"]
    with pytest.warns(SqlqCompatibilityWarning, match="'yaml', which sqlq has no serializer for"):
        assert Settings(accept_content=["json", "yaml"]).accept_content == ["json"]


def test_result_expires_takes_a_timedelta_and_refuses_never():
    assert Settings(result_expires=dt.timedelta(hours=1)).result_expires == 3600
    assert Settings(result_expires=dt.timedelta(seconds=1.5)).result_expires == 1.5
    for never in (None, 0):
        with pytest.raises(ConfigurationError, match="has no 'never'.*timedelta"):
            Settings(result_expires=never)
    with pytest.raises(ConfigurationError, match="must be seconds"):
        Settings(result_expires="1h")


def test_imports_and_include_are_lists_of_module_names():
    conf = Settings(imports="proj.a", include=["proj.b", "proj.c"])
    assert (conf.imports, conf.include) == (("proj.a",), ("proj.b", "proj.c"))
    with pytest.raises(ConfigurationError, match=r"include must be a list of module names"):
        Settings(include=[3])


def test_naive_datetimes_are_utc_unless_enable_utc_is_false():
    assert naive_timezone(Settings()) is dt.UTC
    assert naive_timezone(Settings(timezone="Europe/Oslo")) is dt.UTC  # enable_utc: Celery's default True
    assert naive_timezone(Settings(enable_utc=False, timezone="Europe/Oslo")) == ZoneInfo("Europe/Oslo")
    assert naive_timezone(Settings(enable_utc=False, timezone="UTC")) == ZoneInfo("UTC")  # given, so kept
    local = dt.datetime.now().astimezone().tzinfo
    assert naive_timezone(Settings(enable_utc=False)) == local  # no timezone given: the machine's, as Celery


# --- config objects --------------------------------------------------------------------------

def _module(**attrs: object) -> types.ModuleType:
    module = types.ModuleType("celeryconfig")
    vars(module).update(attrs)
    return module


def test_a_celery_settings_module_of_either_era(no_warnings):
    new = _module(broker_url="postgresql://h/db", task_serializer="json", result_serializer="json",
                  accept_content=["json"], timezone="Europe/Oslo", enable_utc=True, os=sys, helper=len,
                  task_routes={"tasks.add": "low-priority"}, SOME_CONSTANT=3)
    old = _module(BROKER_URL="postgresql://h/db", CELERY_TASK_SERIALIZER="json", CELERY_ALWAYS_EAGER=True,
                  CELERYD_CONCURRENCY=2, CELERYBEAT_SCHEDULE={}, CELERY_TIMEZONE="Europe/Oslo",
                  CELERY_TASK_RESULT_EXPIRES=dt.timedelta(minutes=1))
    a, b = App("a", set_as_current=False), App("b", set_as_current=False)
    a.config_from_object(new)
    b.config_from_object(old)
    assert (a.conf.database_url, a.conf.timezone, a.conf.task_routes) == \
        ("postgresql://h/db", "Europe/Oslo", {"tasks.add": "low-priority"})
    assert (b.conf.database_url, b.conf.task_always_eager, b.conf.worker_concurrency, b.conf.result_expires) == \
        ("postgresql://h/db", True, 2, 60)


def test_a_typo_in_a_settings_module_is_an_error():
    with pytest.raises(ConfigurationError, match="unknown sqlq setting 'task_acks_lte'; did you mean 'task_acks_late'"):
        App("a", set_as_current=False).config_from_object(_module(task_acks_lte=True))


def test_namespace_celery_reads_djangos_style(no_warnings):
    django_settings = _module(DEBUG=True, INSTALLED_APPS=["x"], CELERY_BROKER_URL="postgresql://h/db",
                              CELERY_TASK_ALWAYS_EAGER=True, CELERY_TASK_DEFAULT_QUEUE="celery",
                              CELERY_ACCEPT_CONTENT=["application/json"], task_serializer="pickle")
    app = Celery("proj", namespace="CELERY", set_as_current=False)
    app.config_from_object(django_settings)  # the app's namespace is the default
    assert (app.conf.database_url, app.conf.task_always_eager, app.conf.default_queue, app.conf.accept_content) == \
        ("postgresql://h/db", True, "celery", ["json"])
    assert app.conf.task_serializer == "json"  # outside the namespace: not read
    other = App("proj", set_as_current=False)
    other.config_from_object({"SQLQ_WORKER_CONCURRENCY": 4, "SQLQ_SCHEMA": "jobs"}, namespace="SQLQ")
    assert (other.conf.worker_concurrency, other.conf.schema) == (4, "jobs")
    with pytest.raises(ConfigurationError, match="unknown sqlq setting 'task_always_eagr'"):
        other.config_from_object({"CELERY_TASK_ALWAYS_EAGR": True}, namespace="CELERY")


# --- Celery's constructor --------------------------------------------------------------------

def test_celerys_constructor(no_warnings):
    source = _module(task_serializer="msgpack", timezone="Europe/Oslo")
    app = Celery("proj", broker="postgresql://h/db", backend="db+postgresql://h/db", include=["proj.tasks"],
                 config_source=source, timezone="UTC", task_default_queue="celery", set_as_current=False)
    assert Celery is App and app.main == "proj"
    assert app.conf.database_url == "postgresql://h/db" and app.conf.include == ("proj.tasks",)
    assert (app.conf.task_serializer, app.conf.timezone) == ("msgpack", "UTC")  # the constructor wins
    assert app.conf.default_queue == "celery"
    assert App("proj", "postgresql://h/x", set_as_current=False).conf.database_url == "postgresql://h/x"


def test_celerys_constructor_arguments_for_parts_sqlq_lacks_warn():
    with pytest.warns(SqlqCompatibilityWarning, match="loader= has no effect in sqlq"):
        Celery("proj", loader="celery.loaders.app:AppLoader", set_as_current=False)


class Base(Task):
    """A base class for task_cls."""


def test_task_cls_gives_app_task():
    """app.Task is the app's own subclass of task_cls (sqlq.Task when none), bound to the app."""
    plain = App(set_as_current=False)
    assert plain.Task.__mro__[1] is Task and plain.Task._app is plain
    assert App(task_cls=Base, set_as_current=False).Task.__mro__[1] is Base
    assert App(task_cls=f"{__name__}:Base", set_as_current=False).Task.__mro__[1] is Base
    assert App(task_cls=f"{__name__}.Base", set_as_current=False).Task.__mro__[1] is Base
    with pytest.raises(ConfigurationError, match="not a subclass of sqlq.Task"):
        _ = App(task_cls=f"{__name__}.CELERY_5_5_SETTINGS", set_as_current=False).Task
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        _ = App(task_cls="no_such_module_xyz.Base", set_as_current=False).Task


# --- finalize, signals and task_annotations --------------------------------------------------

def test_finalize_sends_the_app_signals_once_with_the_app():
    app = App("proj", set_as_current=False)
    seen: list[tuple[str, object, object]] = []
    app.on_configure.connect(lambda sender, **kw: seen.append(("configure", sender, None)))
    app.on_after_configure.connect(lambda sender, **kw: seen.append(("after_configure", sender, kw["source"])))
    app.on_after_finalize.connect(lambda sender, **kw: seen.append(("after_finalize", sender, None)))
    app.finalize()
    app.finalize()
    assert seen == [("configure", app, None), ("after_configure", app, app.conf), ("after_finalize", app, None)]
    assert app.finalized


def test_autofinalize_false_must_be_finalized_by_its_owner():
    app = App("proj", autofinalize=False, set_as_current=False)
    with pytest.raises(ConfigurationError, match="autofinalize=False.*call app.finalize"):
        app.finalize(auto=True)
    app.finalize()
    app.finalize(auto=True)  # done: nothing to refuse


def test_finalize_imports_include_and_a_missing_module_is_named(tmp_path, monkeypatch):
    (tmp_path / "celery_unit_inc.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = App("proj", include=["celery_unit_inc"], set_as_current=False)
    try:
        app.finalize()
        assert sys.modules["celery_unit_inc"].IMPORTED
    finally:
        sys.modules.pop("celery_unit_inc", None)
    with pytest.raises(ConfigurationError, match="cannot import module 'celery_unit_missing' listed in imports"):
        App("proj", imports=["celery_unit_missing"], set_as_current=False).finalize()


def _tasks(app: App) -> tuple[Task, Task]:
    def add(x: int, y: int) -> int:
        return x + y

    def mul(x: int, y: int) -> int:
        return x * y

    return app.task(name="tasks.add")(add), app.task(name="tasks.mul")(mul)


def test_task_annotations_dict_and_star_in_celerys_order():
    app = App("proj", task_annotations={"tasks.add": {"time_limit": 10, "max_retries": 1}, "*": {"time_limit": 99}},
              set_as_current=False)
    add, mul = _tasks(app)
    app.finalize()
    assert (add.time_limit, add.max_retries, mul.time_limit) == (99, 1, 99)  # '*' is applied last, as in Celery


class ByPrefix:
    """Celery's annotation object."""

    def annotate(self, task: Task) -> dict[str, object] | None:
        return {"soft_time_limit": 5} if task.name.startswith("tasks.m") else None


def test_task_annotations_list_of_objects_callables_and_paths():
    app = App("proj", set_as_current=False, task_annotations=[
        ByPrefix(), lambda task: {"max_retries": 7} if task.name == "tasks.add" else None,
        f"{__name__}.ByPrefix", {"tasks.add": {"max_retries": 0}}])
    add, mul = _tasks(app)
    app.finalize()
    assert (mul.soft_time_limit, add.max_retries, add.soft_time_limit) == (5, 7, None)  # first match wins


def test_a_task_registered_after_finalize_is_annotated_and_methods_are_bound():
    app = App("proj", task_annotations={"*": {"max_retries": 2}}, set_as_current=False)
    app.finalize()
    add, _ = _tasks(app)
    app.annotate_task(add)  # what registering does after finalize (wired in App._register)
    assert add.max_retries == 2

    calls: list[object] = []

    def apply_async(self: Task, *args: object, **kwargs: object) -> None:
        calls.append(self)

    other = App("proj", task_annotations={"tasks.add": {"apply_async": apply_async}}, set_as_current=False)
    add, _ = _tasks(other)
    other.finalize()
    add.apply_async((1, 2))  # a function given for a method is bound to the task, as on Celery's class
    assert calls == [add]


def test_task_annotations_errors_name_the_problem():
    app = App("proj", task_annotations={"tasks.add": {"rate_limt": "10/s"}}, set_as_current=False)
    # annotations given before a task is registered apply (and fail) at its registration
    with pytest.raises(ConfigurationError, match="sets 'rate_limt' on task 'tasks.add', which sqlq tasks do not have"):
        _tasks(app)
    for bad, match in ((3, "not a dict, an object with annotate"), ({"tasks.add": 3}, "maps a task name"),
                       ([lambda task: 3], "must return a dict"), ({"tasks.add": {"@on_failure": len}}, "'@on_failure'")):
        other = App("proj", set_as_current=False)
        _tasks(other)
        other.conf.task_annotations = bad  # given after: finalize applies them
        with pytest.raises(ConfigurationError, match=match):
            other.finalize()


def test_annotations_changed_after_finalize_apply_to_tasks_registered_later():
    app = App("proj", include="proj.tasks", task_annotations={"*": {"max_retries": 2}}, set_as_current=False)
    assert app.conf.include == ("proj.tasks",)  # one module name, not its letters
    app.conf.include = ()
    app.finalize()
    app.conf.task_annotations = {"*": {"max_retries": 9}}
    add, _ = _tasks(app)
    app.annotate_task(add)
    assert add.max_retries == 9


def test_celery_names_read_and_write_as_a_mapping():
    conf = Settings()
    conf["task_default_queue"] = "celery"
    assert conf["task_default_queue"] == conf.get("default_queue") == conf.get("task_default_queue") == "celery"
    assert "task_default_queue" in conf and "broker_pool_limit" not in conf
    assert conf.get("broker_pool_limit", 10) == 10
    with pytest.warns(SqlqCompatibilityWarning):
        conf["broker_pool_limit"] = 3
    assert conf["broker_pool_limit"] == 3
    with pytest.raises(KeyError):
        _ = conf["nope"]
