"""Celery's setting names, and what each one means here.

A Celery code base moves over with its configuration unchanged, so every name in Celery's
configuration reference (https://docs.celeryq.dev/en/stable/userguide/configuration.html) is
decided here, once, and `Settings` (sqlq/config.py) asks this module about any name that is not one
of sqlq's own:

* ``RENAMED``: Celery's name for a sqlq setting spelled differently (``task_default_queue`` is
  sqlq's ``default_queue``). The names sqlq spells as Celery does (``task_serializer``,
  ``worker_concurrency``, ...) need no entry: they are sqlq settings.
* ``NO_MEANING``: settings of a broker, a result backend or a mechanism sqlq does not have (with
  PostgreSQL as both, a broker's heartbeat or a Redis backend's socket timeout configure
  nothing). Setting one warns once, saying why, and is otherwise without effect.
* ``NOT_YET``: settings that would mean something here but that sqlq does not implement; setting
  one warns once, saying so and what to use instead.
* ``old_name(new)``: Celery's pre-4.0 upper-case names (``CELERY_ALWAYS_EAGER``,
  ``CELERYD_CONCURRENCY``, ``BROKER_URL``) as Celery derives them, so that a settings module of
  that era keeps working.

A name in none of these is not a setting at all, and stays an error.
"""

from __future__ import annotations

from functools import lru_cache

#: Celery's name → the sqlq setting it sets. ``broker_url`` and ``result_backend`` become the
#: database URL only when they are PostgreSQL URLs (sqlq/config.py checks and translates them).
RENAMED: dict[str, str] = {
    "task_default_queue": "default_queue",
    "broker_url": "database_url",
    "result_backend": "database_url",
    "beat_max_loop_interval": "beat_interval",
}

#: Celery's names that sqlq spells the same way (they are entries of sqlq's DEFAULTS).
SAME_NAME: tuple[str, ...] = (
    "accept_content", "enable_utc", "imports", "include", "timezone", "beat_schedule", "database_url",
    "result_expires", "result_serializer",
    "task_acks_late", "task_always_eager", "task_annotations", "task_default_exchange",
    "task_default_exchange_type", "task_default_priority", "task_default_rate_limit",
    "task_default_routing_key", "task_eager_propagates", "task_ignore_result", "task_queues",
    "task_routes", "task_send_sent_event", "task_serializer", "task_soft_time_limit", "task_store_eager_result",
    "task_time_limit", "task_track_started", "worker_concurrency", "worker_disable_rate_limits",
    "worker_enable_remote_control", "worker_max_memory_per_child", "worker_max_tasks_per_child", "worker_pool",
    "worker_prefetch_multiplier", "worker_send_task_events",
)

_BROKER = "PostgreSQL is the broker and sqlq connects to it with database_url alone"
_BACKEND = "results are rows in sqlq's own PostgreSQL tables, so other result backends' settings configure nothing"
_NO_EVENTS = ("sqlq's events are rows of its events table, read with `sqlq events` or app.events.receiver(); "
              "they have no exchange, queue or serializer to configure")
_NO_CONTROL = ("sqlq's remote control goes through PostgreSQL tables (control, control_replies) and NOTIFY: there "
               "is no control exchange or queue to configure")
_ONE_URL = "sqlq uses one database URL for sending, consuming and results (database_url)"
_QUEUES = "a sqlq queue is a column value: every queue exists without being declared, with no broker queue type"

#: Celery's names that configure something sqlq does not have → why.
NO_MEANING: dict[str, str] = {
    # the broker connection
    "broker_read_url": _ONE_URL,
    "broker_write_url": _ONE_URL,
    "broker_transport": _BROKER,
    "broker_transport_options": _BROKER,
    "broker_connection_timeout": f"{_BROKER}; put connect_timeout=N in the URL's query string",
    "broker_connection_retry": "sqlq retries a broken connection by itself and waits for the database "
                               "while it is down (see database_wait_timeout)",
    "broker_connection_retry_on_startup": "a starting worker or beat waits for the database as long as "
                                          "database_wait_timeout says (none: for ever, 0: not at all)",
    "broker_connection_max_retries": "a starting worker or beat waits for the database as long as "
                                     "database_wait_timeout says",
    "broker_channel_error_retry": _BROKER,
    "broker_failover_strategy": f"{_BROKER}; list several hosts in the URL (host=a,b) for libpq's failover",
    "broker_heartbeat": "PostgreSQL connections need no AMQP heartbeat; workers write their own "
                        "heartbeat rows (worker_heartbeat_interval)",
    "broker_heartbeat_checkrate": "PostgreSQL connections need no AMQP heartbeat (see worker_heartbeat_interval)",
    "broker_login_method": f"{_BROKER}; the login is the URL's user and password",
    "broker_native_delayed_delivery_queue_type": "a countdown or eta is a run_at column of the job's row, "
                                                 "with no delayed-delivery queue",
    "broker_pool_limit": "sqlq sizes its own connection pool",
    "broker_pool_acquire_timeout": "sqlq sizes its own connection pool",
    "broker_use_ssl": f"{_BROKER}; put sslmode=require (and sslrootcert=...) in the URL's query string",
    "broker_host": f"{_BROKER}; put the host in the URL",
    "broker_port": f"{_BROKER}; put the port in the URL",
    "broker_user": f"{_BROKER}; put the user in the URL",
    "broker_password": f"{_BROKER}; put the password in the URL",
    "broker_vhost": f"{_BROKER}; a separate set of queues is a separate schema (the schema setting)",
    # other result backends and the database backend's own tables
    **{name: _BACKEND for name in (
        "cache_backend", "cache_backend_options",
        "cassandra_auth_kwargs", "cassandra_auth_provider", "cassandra_bundle_path", "cassandra_entry_ttl",
        "cassandra_keyspace", "cassandra_options", "cassandra_port", "cassandra_read_consistency",
        "cassandra_servers", "cassandra_table", "cassandra_write_consistency",
        "s3_access_key_id", "s3_base_path", "s3_bucket", "s3_endpoint_url", "s3_region", "s3_secret_access_key",
        "azureblockblob_base_path", "azureblockblob_connection_timeout", "azureblockblob_container_name",
        "azureblockblob_read_timeout", "azureblockblob_retry_increment_base",
        "azureblockblob_retry_initial_backoff_sec", "azureblockblob_retry_max_attempts",
        "gcs_base_path", "gcs_bucket", "gcs_project", "gcs_ttl",
        "couchbase_backend_settings", "arangodb_backend_settings", "mongodb_backend_settings",
        "cosmosdbsql_collection_name", "cosmosdbsql_consistency_level", "cosmosdbsql_database_name",
        "cosmosdbsql_max_retry_attempts", "cosmosdbsql_max_retry_wait_time",
        "elasticsearch_max_retries", "elasticsearch_retry_on_timeout", "elasticsearch_save_meta_as_text",
        "elasticsearch_timeout",
        "redis_backend_use_ssl", "redis_db", "redis_host", "redis_max_connections", "redis_password",
        "redis_port", "redis_retry_on_timeout", "redis_socket_connect_timeout", "redis_socket_keepalive",
        "redis_socket_timeout", "redis_username",
        "result_backend_transport_options", "result_backend_always_retry",
        "result_backend_base_sleep_between_retries_ms", "result_backend_max_retries",
        "result_backend_max_sleep_between_retries_ms",
    )},
    "database_engine_options": "sqlq makes its own engine and pools from database_url",
    "database_engine_callback": "sqlq makes its own engine and pools from database_url",
    "database_short_lived_sessions": "sqlq makes its own engine and pools from database_url",
    "database_create_tables_at_setup": "sqlq's tables are made and upgraded by `sqlq migrate` (app.migrate())",
    "database_table_names": "sqlq's table names are fixed; choose where they live with the schema setting",
    "database_table_schemas": "sqlq's tables live in one schema: set the schema setting",
    "result_cache_max": "an AsyncResult reads its row; a finished row is kept by that AsyncResult only",
    "result_exchange": "results are rows, not messages sent through an exchange",
    "result_exchange_type": "results are rows, not messages sent through an exchange",
    "result_persistent": "results are rows in PostgreSQL: always persistent",
    # events, remote control, broker queue declarations
    "event_exchange": _NO_EVENTS, "event_queue_durable": _NO_EVENTS, "event_queue_exclusive": _NO_EVENTS,
    "event_queue_expires": _NO_EVENTS, "event_queue_prefix": _NO_EVENTS, "event_queue_ttl": _NO_EVENTS,
    "event_serializer": _NO_EVENTS,
    "control_exchange": _NO_CONTROL, "control_queue_durable": _NO_CONTROL,
    "control_queue_exclusive": _NO_CONTROL, "control_queue_expires": _NO_CONTROL,
    "control_queue_ttl": _NO_CONTROL,
    "worker_direct": _NO_CONTROL,
    "task_create_missing_queues": _QUEUES,
    "task_create_missing_queue_type": _QUEUES,
    "task_create_missing_queue_exchange_type": _QUEUES,
    "task_default_queue_type": _QUEUES,
    "worker_detect_quorum_queues": _QUEUES,
    "task_queue_max_priority": "priorities need no declared maximum: any integer from -32768 to 32767 works "
                               "on every queue",
    "task_default_delivery_mode": "every job is a row written in a committed transaction: always persistent",
    "task_protocol": "sqlq's job rows have one format, so there is no message protocol to choose",
    "task_publish_retry": "sending is an INSERT; a broken connection is retried once by sqlq itself",
    "task_publish_retry_policy": "sending is an INSERT; a broken connection is retried once by sqlq itself",
    # the worker's mechanics
    "worker_agent": "sqlq workers have no agent (no celery.events monitoring)",
    "worker_consumer": "sqlq's consumer is the claim loop; it is not pluggable",
    "worker_timer": "sqlq's worker has no pluggable timer: eta and countdown are run_at columns",
    "worker_timer_precision": "sqlq's worker has no pluggable timer: eta and countdown are run_at columns",
    "worker_eta_task_limit": "a worker never holds eta jobs in memory: they wait as rows until due",
    "worker_enable_prefetch_count_reduction": "claims are batches of rows, with no broker prefetch count "
                                              "to reduce (see worker_prefetch_multiplier)",
    "worker_cancel_long_running_tasks_on_connection_loss": "a job is not redelivered when a connection "
                                                           "drops: it stays claimed by its worker until "
                                                           "the worker finishes it or is lost (worker_lost_timeout)",
    "worker_deduplicate_successful_tasks": "a job is claimed by one worker at a time and leaves the queue "
                                           "when it finishes, so a succeeded job is not run again",
    "worker_lost_wait": "a lost worker is noticed by its missing heartbeat (worker_lost_timeout)",
    "worker_state_db": "revokes and results are rows in PostgreSQL: there is no worker state file to keep",
    "worker_pool_putlocks": "sqlq's pools claim only what they have room for",
    "worker_pool_restarts": "sqlq has no remote pool_restart command",
    "worker_proc_alive_timeout": "sqlq's prefork children report that they started on their own pipe",
    "worker_hijack_root_logger": "sqlq never touches the root logger: the worker configures the 'sqlq' logger only",
    "worker_redirect_stdouts": "sqlq's worker leaves sys.stdout and sys.stderr as they are",
    "worker_redirect_stdouts_level": "sqlq's worker leaves sys.stdout and sys.stderr as they are",
    "beat_scheduler": "sqlq's beat keeps schedules and their last runs in the database; it is not pluggable",
    "beat_schedule_filename": "sqlq's beat keeps schedules and their last runs in the database, not in a file",
    "beat_sync_every": "sqlq's beat records every run in the database as it sends it",
}

#: Celery's names that would mean something here but sqlq does not implement → what instead.
NOT_YET: dict[str, str] = {
    "task_compression": "not supported yet: arguments are stored uncompressed (PostgreSQL TOASTs large values)",
    "result_compression": "not supported yet: results are stored uncompressed (PostgreSQL TOASTs large values)",
    "result_accept_content": "not supported yet: accept_content decides what a worker decodes, "
                             "and AsyncResult decodes results by their stored content type",
    "result_extended": "not supported yet as a switch: result rows always hold the task name, and "
                       "the arguments stay in the job's history row",
    "result_chord_join_timeout": "chords are canvas (issue #13)",
    "result_chord_retry_interval": "chords are canvas (issue #13)",
    "task_allow_error_cb_on_chord_header": "chords are canvas (issue #13)",
    "task_inherit_parent_priority": "not supported yet: give the priority to apply_async or the task",
    "task_remote_tracebacks": "not supported yet: the traceback text is stored with a FAILURE result "
                              "(AsyncResult.traceback)",
    "task_store_errors_even_if_ignored": "not supported yet: a task with ignore_result records "
                                         "its final state only",
    "task_reject_on_worker_lost": "not supported yet as an app setting: set reject_on_worker_lost on the "
                                  "task, or for every task with task_annotations={'*': {...}}; "
                                  "task_acks_late decides what a lost worker's jobs do",
    "task_acks_on_failure_or_timeout": "not supported: a job that fails or times out always ends FAILURE; "
                                       "to run it again use autoretry_for or self.retry()",
    "task_acks_on_failure": "not supported: a job that fails always ends FAILURE; "
                            "to run it again use autoretry_for or self.retry()",
    "task_acks_on_timeout": "not supported: a job that times out always ends FAILURE; "
                            "to run it again use autoretry_for or self.retry()",
    "beat_cron_starting_deadline": "not supported: missed ticks follow beat_catchup ('latest' or 'backfill')",
    "worker_autoscaler": "not supported: sqlq's autoscaler is not pluggable; sqlq worker --autoscale MAX,MIN "
                         "sizes the pool",
    "worker_soft_shutdown_timeout": "not supported as such: on a warm shutdown running jobs get "
                                    "worker_shutdown_grace seconds",
    "worker_enable_soft_shutdown_on_idle": "not supported as such: on a warm shutdown running jobs get "
                                           "worker_shutdown_grace seconds",
    "worker_disable_prefetch": "not supported yet: set worker_prefetch_multiplier=1 for the smallest claims",
    "worker_log_color": "not supported yet: the worker's log format is fixed",
    "worker_log_format": "not supported yet: the worker's text format is fixed; --log-format json "
                         "(setting log_format) logs one JSON object per line",
    "worker_task_log_format": "not supported yet: the worker's log format is fixed (it names the task and id)",
    "security_certificate": "message signing is not supported: anyone who can write to the database can send jobs",
    "security_cert_store": "message signing is not supported: anyone who can write to the database can send jobs",
    "security_digest": "message signing is not supported: anyone who can write to the database can send jobs",
    "security_key": "message signing is not supported: anyone who can write to the database can send jobs",
    "security_key_password": "message signing is not supported: anyone who can write to the database can send jobs",
}

#: Every setting name Celery has.
CELERY_NAMES: frozenset[str] = frozenset(RENAMED) | frozenset(SAME_NAME) | frozenset(NO_MEANING) | frozenset(NOT_YET)

#: Celery's old names that its derivation rule below does not give (Celery renamed these freely).
_EXPLICIT_OLD: dict[str, str] = {
    "result_cache_max": "CELERY_MAX_CACHED_RESULTS",
    "result_expires": "CELERY_TASK_RESULT_EXPIRES",
    "database_url": "CELERY_RESULT_DBURI",
    "database_engine_options": "CELERY_RESULT_ENGINE_OPTIONS",
    "database_short_lived_sessions": "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",
    "database_table_names": "CELERY_RESULT_DB_TABLENAMES",
    "task_compression": "CELERY_MESSAGE_COMPRESSION",
    "task_eager_propagates": "CELERY_EAGER_PROPAGATES_EXCEPTIONS",
    "task_protocol": "CELERY_TASK_PROTOCOL",
    "task_publish_retry": "CELERY_TASK_PUBLISH_RETRY",
    "task_publish_retry_policy": "CELERY_TASK_PUBLISH_RETRY_POLICY",
    "task_send_sent_event": "CELERY_SEND_TASK_SENT_EVENT",
    "task_serializer": "CELERY_TASK_SERIALIZER",
    "task_soft_time_limit": "CELERYD_TASK_SOFT_TIME_LIMIT",
    "task_time_limit": "CELERYD_TASK_TIME_LIMIT",
    "worker_direct": "CELERY_WORKER_DIRECT",
    "worker_disable_rate_limits": "CELERY_DISABLE_RATE_LIMITS",
    "worker_enable_remote_control": "CELERY_ENABLE_REMOTE_CONTROL",
    "worker_lost_wait": "CELERYD_WORKER_LOST_WAIT",
    "worker_redirect_stdouts": "CELERY_REDIRECT_STDOUTS",
    "worker_redirect_stdouts_level": "CELERY_REDIRECT_STDOUTS_LEVEL",
    "worker_send_task_events": "CELERY_SEND_EVENTS",
}

#: Celery namespaces whose old names were ``CELERY_`` + the whole new name.
_CELERY_PREFIXED = ("result_", "cache_", "redis_", "mongodb_", "couchbase_", "arangodb_", "event_",
                    "security_", "elasticsearch_")


def old_name(name: str) -> str:
    """Celery's pre-4.0 name of setting ``name`` (``task_always_eager`` → ``CELERY_ALWAYS_EAGER``),
    derived as Celery derives it: per namespace, with the exceptions above."""
    explicit = _EXPLICIT_OLD.get(name)
    if explicit is not None:
        return explicit
    if name.startswith("task_"):
        return "CELERY_" + name[len("task_"):].upper()
    if name.startswith("worker_"):
        return "CELERYD_" + name[len("worker_"):].upper()
    if name.startswith("beat_"):
        return "CELERYBEAT_" + name[len("beat_"):].upper()
    if name in ("accept_content", "imports", "include", "timezone") or (
            name.startswith(_CELERY_PREFIXED) and name != "result_accept_content"):
        return "CELERY_" + name.upper()
    return name.upper()  # broker_*, enable_utc, the other backends: the new name in capitals


@lru_cache(maxsize=1)
def old_names() -> dict[str, str]:
    """Old upper-case name → Celery's current name, for every Celery setting."""
    return {old_name(name): name for name in CELERY_NAMES}


def celery_name(key: str) -> str | None:
    """The Celery setting ``key`` is a spelling of (itself, or the new name of an old one), or None."""
    if key in CELERY_NAMES:
        return key
    return old_names().get(key)


#: Serializer names sqlq has, and the content types Celery also allows in ``accept_content``.
_SERIALIZERS: dict[str, str] = {
    "json": "json", "application/json": "json",
    "msgpack": "msgpack", "application/x-msgpack": "msgpack",
    "pickle": "pickle", "application/x-python-serialize": "pickle",
}


def serializer_name(item: object) -> str | None:
    """sqlq's serializer name for an ``accept_content`` entry (a name or a content type), or None
    when sqlq has no such serializer (Celery's ``yaml``, ``application/x-yaml``)."""
    return _SERIALIZERS.get(item.strip().lower()) if isinstance(item, str) else None
