from .fleet.lease import resolve

__all__ = ["resolve"]
