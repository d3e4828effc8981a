"""The push listener: the HTTP side of devices that dial in (ADMS / iclock).

A view over the engine's push gateway, like ``server/`` is over the store: it
carries each device call's text to ``engine.push.PushGateway`` and its answer
back, and keeps out what is not a device call (bad serials, oversized bodies,
floods). Started by the runtime when ``[push] enabled = true``.
"""

from fleettui.push.listener import push_app, start_listener

__all__ = ["push_app", "start_listener"]
