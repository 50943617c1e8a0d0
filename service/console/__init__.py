"""The web console at ``/console/``: server-rendered pages on the core calls the routes make."""
