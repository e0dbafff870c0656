"""The WSGI server's environ dict classes: `Environ`, and `SecureEnviron` whose repr masks values in error reports."""

from __future__ import annotations

from typing import Any

__all__ = ["Environ", "SecureEnviron", "WSGISecureEnviron"]


class Environ(dict):
    """A dict for WSGI environs (``copy()`` keeps the class)."""

    __slots__ = ()

    def copy(self) -> Environ:
        """A shallow copy of the same class."""
        return self.__class__(self)

    def __reduce_ex__(self, protocol: Any) -> tuple:
        # Pickled and copied (copy.copy) as a plain dict: the class is the server's business, not the receiver's.
        return (dict, (), None, None, iter(self.items()))


class SecureEnviron(Environ):
    """An environ whose repr masks the values (for error reports): only ``whitelist_keys`` show."""

    default_secure_repr = True
    default_whitelist_keys: tuple = ()
    default_print_masked_keys = True

    __slots__ = ("secure_repr", "whitelist_keys", "print_masked_keys")

    def __getattr__(self, name: str) -> Any:
        if name in SecureEnviron.__slots__:
            return getattr(type(self), "default_" + name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        if not self.secure_repr:
            return dict.__repr__(self)
        whitelist = self.whitelist_keys
        if not whitelist:
            return f"<pywsgi.SecureEnviron dict (keys: {len(self)}) at {id(self)}>"
        shown = {k: self[k] if k in whitelist else "<MASKED>" for k in self if k in whitelist or self.print_masked_keys}
        text = repr(shown)
        if len(shown) != len(self):
            text = f"{text[:-1]}, (hidden keys: {len(self) - len(shown)})}}"
        return text

    __str__ = __repr__


class WSGISecureEnviron(SecureEnviron):
    """A SecureEnviron showing only the client's address and the Host header."""

    default_whitelist_keys = ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST")
    default_print_masked_keys = False
