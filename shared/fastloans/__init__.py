"""Fast Loans shared library: settings, database, events, Kafka, logging, credit policy."""

__version__ = "0.1.0"
