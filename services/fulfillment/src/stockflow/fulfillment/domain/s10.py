"""UPU S10 tracking numbers: 2-letter service indicator, 8-digit serial, check digit, 2-letter
ISO country of the issuing operator, e.g. "RR473124829GB".

Check digit (UPU S10 standard): multiply the serial's digits by 8, 6, 4, 2, 3, 5, 9, 7, sum,
take 11 - (sum mod 11); a result of 10 becomes 0 and 11 becomes 5.
"""

from __future__ import annotations

import re

_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_S10_PATTERN = re.compile(r"^[A-Z]{2}(\d{8})(\d)[A-Z]{2}$")
MAX_SERIAL = 99_999_999


def s10_check_digit(serial: str) -> int:
    """The check digit of an 8-digit serial."""
    if len(serial) != 8 or not serial.isdigit():
        raise ValueError(f"An S10 serial is exactly 8 digits, got {serial!r}")
    remainder = sum(int(digit) * weight for digit, weight in zip(serial, _WEIGHTS, strict=True))
    check = 11 - remainder % 11
    return {10: 0, 11: 5}.get(check, check)


def format_s10(service_indicator: str, serial: int, country: str) -> str:
    """A complete S10 number from its parts; `serial` is 0..99,999,999."""
    if not re.fullmatch(r"[A-Z]{2}", service_indicator):
        raise ValueError(f"The service indicator is two capital letters, got {service_indicator!r}")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ValueError(f"The country is an ISO 3166-1 alpha-2 code, got {country!r}")
    if not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"An S10 serial has 8 digits; {serial} does not fit")
    digits = f"{serial:08d}"
    return f"{service_indicator}{digits}{s10_check_digit(digits)}{country}"


def is_valid_s10(tracking_number: str) -> bool:
    """True when `tracking_number` is well formed and its check digit matches."""
    match = _S10_PATTERN.fullmatch(tracking_number)
    return match is not None and s10_check_digit(match.group(1)) == int(match.group(2))
