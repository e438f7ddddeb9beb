"""ZeroMQ wire protocol, publisher, subscriber and the analysis service."""
