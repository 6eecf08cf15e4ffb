"""Celery's Tasks guide, "Instantiation": a base Task class that caches a database connection
(``Database`` stands for the user's own client library), named by ``task_cls='...:DatabaseTask'``."""

import itertools

from sqlq import Task

_connections = itertools.count(1)


class Database:
    """The guide's ``Database``: ``connect()`` gives a new connection each time it is called."""

    def __init__(self, number):
        self.number = number
        self.table = self

    @classmethod
    def connect(cls):
        return cls(next(_connections))

    def all(self):
        return [1, 2, 3]


class DatabaseTask(Task):
    _db = None

    @property
    def db(self):
        if self._db is None:
            self._db = Database.connect()
        return self._db
