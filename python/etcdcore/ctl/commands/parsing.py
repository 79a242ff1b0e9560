"""Argument parsing with Go's error texts (strconv), as etcdctl reports them."""

from __future__ import annotations

from ..errors import EXIT_BAD_ARGS, CtlError


def go_int(text: str, flag: str | None, code: int = EXIT_BAD_ARGS, bits: int = 64) -> int:
    """A base-10 int64, or strconv.ParseInt's error."""
    try:
        value = int(text, 10)
    except ValueError:
        raise CtlError(code, _flag_error(text, flag, "invalid syntax", "ParseInt")) from None
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise CtlError(code, _flag_error(text, flag, "value out of range", "ParseInt"))
    return value


def _flag_error(text: str, flag: str | None, why: str, fn: str) -> str:
    err = f'strconv.{fn}: parsing "{text}": {why}'
    if flag is None:
        return err
    return f'invalid argument "{text}" for "--{flag}" flag: {err}'


def hex_id(text: str, template: str, code: int = EXIT_BAD_ARGS, unsigned: bool = False) -> int:
    """A hexadecimal lease or member ID; template gets strconv's error."""
    fn = "ParseUint" if unsigned else "ParseInt"
    try:
        value = int(text, 16)
        if (
            text.strip() != text
            or text.startswith(("0x", "0X", "+"))
            or (unsigned and text.startswith("-"))
        ):
            raise ValueError
    except ValueError:
        raise CtlError(
            code, template.format(f'strconv.{fn}: parsing "{text}": invalid syntax')
        ) from None
    limit = 2**64 if unsigned else 2**63
    if not (0 if unsigned else -limit) <= value < limit:
        raise CtlError(code, template.format(f'strconv.{fn}: parsing "{text}": value out of range'))
    return value
