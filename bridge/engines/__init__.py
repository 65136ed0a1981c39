"""Plate-reading engines that run inside the bridge instead of calling Plate Recognizer."""
