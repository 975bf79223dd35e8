"""The chat example: rooms, presence, typing notices, a browser page that reconnects.

Run:  granian --interface rsgi examples.chat:app      (http://127.0.0.1:8000/)
See ``examples/chat/app.py`` for the server and ``examples/chat/index.html`` for the page.
"""

from .app import app

__all__ = ["app"]
