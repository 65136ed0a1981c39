"""The core every layer stands on: the message, events, protocols, errors; it imports nothing above it."""
