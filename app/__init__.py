"""Items API: a Flask + SQLAlchemy service built to be shipped in a container."""

__version__ = "0.1.0"
