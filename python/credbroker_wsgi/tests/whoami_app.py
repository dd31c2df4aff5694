"""The Flask app both test files put behind the middleware: it answers what it was told."""

from flask import Flask, request

from credbroker_wsgi import current_identity


def whoami_app(path):
    """A Flask app whose `path` answers the caller's identity and any X-Credbroker-* header left."""
    app = Flask(__name__)

    @app.get(path)
    def whoami():
        identity = current_identity()
        leaked = sorted(k for k in request.headers.keys() if k.lower().startswith("x-credbroker-"))
        if identity is None:
            return {"anonymous": True, "headers": leaked}
        return {"identity_id": identity.identity_id, "provider": identity.provider,
                "subject": identity.subject, "claims": dict(identity.claims), "headers": leaked}

    return app
