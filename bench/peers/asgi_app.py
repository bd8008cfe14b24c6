"""The app as a module-level object, for `fastapi run`, which looks for an `app` attribute and
cannot call a factory. The other peers call `app.main:create_app` themselves."""

from app.main import create_app

app = create_app()
