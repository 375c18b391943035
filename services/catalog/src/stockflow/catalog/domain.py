"""The catalog's model: products, their variants (one per SKU) and the rules they obey.

Pure: no database, Kafka or HTTP. Every rule violation is a pydantic `ValidationError` whose
`loc` names the offending field (e.g. `("variants", 2, "barcode")`), so the API can answer 422
and the bulk import can point at a CSV cell. Models are frozen; changes go through
`apply_patch`, `replace_content` and the status functions, which check the version the caller
read (optimistic concurrency) and return a new product with `version + 1`.

Lifecycle: draft -> active -> discontinued, and active -> draft (take a product offline to
rework it). A draft may be discontinued without ever going live. No patch or import moves a
product out of discontinued (its content may still be corrected); only `reactivate` brings it
back, and only to draft, so that a returning product (prices most likely stale) is reviewed
before it sells again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from stockflow.contracts.currencies import MINOR_UNITS
from stockflow.contracts.events._shared import Count, Text, Version
from stockflow.contracts.events.catalog import Dimensions, Handle, OptionName
from stockflow.contracts.types import (
    Currency,
    Identifier,
    NonNegativeMoney,
    Quantity,
    ShortText,
    Sku,
    Timestamp,
)

ProductStatus = Literal["draft", "active", "discontinued"]

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "discontinued"}),
    "active": frozenset({"draft", "discontinued"}),
    "discontinued": frozenset(),  # only `reactivate` leaves it
}

MAX_OPTIONS = 3
GTIN_LENGTHS = (8, 12, 13, 14)
KNOWN_BUNDLES = "known_bundles"
"""Validation-context key of a `KnownBundles`, for rules that span products."""

SERVER_FIELDS = frozenset({"id", "version", "updated_at"})
"""Stamped by the catalog: a patch may not set them and `replace_content` ignores them."""


class CatalogError(Exception):
    """A catalog rule refused a command (as opposed to a malformed field)."""


class StaleVersion(CatalogError):
    """The product changed since the caller read it (HTTP 409)."""

    def __init__(self, handle: str, expected: int, actual: int) -> None:
        super().__init__(f"{handle}: expected version {expected}, the product is at {actual}")
        self.expected = expected
        self.actual = actual


class InvalidTransition(CatalogError):
    """A status change the lifecycle does not allow (HTTP 409)."""

    def __init__(self, handle: str, current: str, requested: str) -> None:
        super().__init__(f"{handle}: cannot go from {current} to {requested}")
        self.current = current
        self.requested = requested


@dataclass(frozen=True)
class KnownBundles:
    """SKUs of *other* products that are bundles, or components of a bundle.

    Pass it in the validation context under `KNOWN_BUNDLES` so that a product cannot nest
    bundles across products: a bundle's component must not be a bundle, and a variant that
    some bundle contains must not become a bundle itself.
    """

    bundle_skus: Collection[str] = field(default_factory=frozenset)
    component_skus: Collection[str] = field(default_factory=frozenset)


Problem = tuple[tuple[str | int, ...], str, object]
"""(loc, message, offending input) of one broken rule."""


def _raise_problems(title: str, problems: list[Problem]) -> None:
    # pydantic keeps the loc of a ValidationError raised inside a validator (and prefixes it
    # when nested), so rules that span fields still name the exact field that breaks them.
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(
                    type=PydanticCustomError("catalog_rule", "{reason}", {"reason": message}),
                    loc=loc,
                    input=value,
                )
                for loc, message, value in problems
            ],
        )


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of a GTIN without its last digit."""
    # Weights alternate 3, 1, 3, ... from the digit next to the check digit leftwards.
    reversed_body = body[::-1]
    weighted = 3 * sum(map(int, reversed_body[::2])) + sum(map(int, reversed_body[1::2]))
    return (10 - weighted % 10) % 10


def is_valid_gtin(code: str) -> bool:
    """True for a GTIN-8, -12 (UPC-A), -13 (EAN) or -14 whose check digit is right."""
    return (
        code.isascii()
        and code.isdigit()
        and len(code) in GTIN_LENGTHS
        and gtin_check_digit(code[:-1]) == int(code[-1])
    )


def _check_gtin(code: str) -> str:
    if not (code.isascii() and code.isdigit() and len(code) in GTIN_LENGTHS):
        raise ValueError("a barcode is a GTIN of 8, 12, 13 or 14 digits")
    if not is_valid_gtin(code):
        raise ValueError(f"check digit of GTIN {code} should be {gtin_check_digit(code[:-1])}")
    return code


def _blank_to_none(value: object) -> object:
    # "" and None both mean "not given"; one spelling keeps CSV and JSON round trips equal.
    return None if isinstance(value, str) and not value.strip() else value


def _attribute_value(value: object) -> str | int | float | bool | Decimal:
    # JSON has no decimal type and a decimal string would come back as a str, so a Decimal
    # travels as {"decimal": "1.50"}: every type survives the round trip.
    if isinstance(value, Mapping) and set(value) == {"decimal"}:
        text = str(value["decimal"])
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a decimal: {text!r}") from None
    if isinstance(value, Decimal | float) and not math.isfinite(value):
        raise ValueError("an attribute number must be finite")
    if isinstance(value, str | int | float | Decimal):
        return value
    raise ValueError("an attribute is a string, integer, float, boolean or {'decimal': '…'}")


Gtin = Annotated[str, Field(strict=True), AfterValidator(_check_gtin)]
"""Strictly a string: a barcode read as a number would lose its leading zeros."""
AttributeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
AttributeValue = Annotated[
    str | int | float | bool | Decimal,
    PlainValidator(_attribute_value),
    PlainSerializer(
        lambda v: {"decimal": format(v, "f")} if isinstance(v, Decimal) else v, when_used="json"
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": ["string", "integer", "number", "boolean"]},
                {"type": "object", "properties": {"decimal": {"type": "string"}}},
            ]
        }
    ),
]
OptionValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^,]+$")]
"""Shopify separates tags with commas, so a tag cannot hold one."""
Category = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^;]+$")]
"""A taxonomy path such as "Apparel > Shirts"; the CSV separates categories with ";"."""
OptionalText = Annotated[ShortText | None, BeforeValidator(_blank_to_none)]
ImageUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Model):
    """An amount in one currency, exact to the currency's minor unit ("12.50 USD", "1200 JPY")."""

    amount: NonNegativeMoney
    currency: Currency

    @model_validator(mode="after")
    def _whole_minor_units(self) -> Price:
        quantum = Decimal(1).scaleb(-MINOR_UNITS[self.currency])
        exact = self.amount.quantize(quantum)
        if exact != self.amount:
            _raise_problems(
                "Price",
                [
                    (
                        ("amount",),
                        f"{self.currency} has {MINOR_UNITS[self.currency]} decimals",
                        format(self.amount, "f"),
                    )
                ],
            )
        # One spelling per value ("12.5" and "12.50" are the same price) keeps content stable.
        object.__setattr__(self, "amount", exact)
        return self


class BundleComponent(_Model):
    """Selling one bundle takes `quantity` units of `sku`."""

    sku: Sku
    quantity: Quantity


class Image(_Model):
    url: ImageUrl
    alt: Annotated[str, StringConstraints(max_length=512)] = ""
    position: Annotated[int, Field(strict=True, ge=1)]


def _one_per_currency(prices: list[Price], name: str) -> list[Problem]:
    seen: set[str] = set()
    problems: list[Problem] = []
    for i, price in enumerate(prices):
        if price.currency in seen:
            problems.append(
                ((name, i, "currency"), f"two {name} in {price.currency}", price.currency)
            )
        seen.add(price.currency)
    return problems


class Variant(_Model):
    """One sellable SKU of a product.

    `tracked` means stock counts units of it. Goods that are not shipped (downloads, services)
    and bundles (whose availability stock derives from the components) are never tracked.
    """

    sku: Sku
    option_values: dict[OptionName, OptionValue] = Field(default_factory=dict)
    barcode: Gtin | None = None
    prices: list[Price] = Field(default_factory=list, max_length=50)
    compare_at_prices: list[Price] = Field(default_factory=list, max_length=50)
    weight_grams: Count | None = None
    dimensions_mm: Dimensions | None = None
    requires_shipping: bool = True
    taxable: bool = True
    tracked: bool = True
    backorderable: bool = False
    preorder_available_at: Timestamp | None = None
    bundle_components: list[BundleComponent] = Field(default_factory=list, max_length=50)

    @property
    def is_bundle(self) -> bool:
        return bool(self.bundle_components)

    def price_in(self, currency: str) -> Price | None:
        return next((p for p in self.prices if p.currency == currency), None)

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Variant:
        problems = _one_per_currency(self.prices, "prices")
        problems += _one_per_currency(self.compare_at_prices, "compare_at_prices")
        for i, was in enumerate(self.compare_at_prices):
            price = self.price_in(was.currency)
            if price is None:
                problems.append(
                    (("compare_at_prices", i), f"no price in {was.currency} to compare with", 0)
                )
            elif was.amount <= price.amount:
                # The storefront shows it struck through; at or below the price it fakes a sale.
                problems.append(
                    (("compare_at_prices", i, "amount"), "must be above the price", str(was.amount))
                )
        if self.tracked and self.is_bundle:
            problems.append((("tracked",), "a bundle is not tracked: stock derives it", True))
        if self.tracked and not self.requires_shipping:
            problems.append((("tracked",), "goods that are not shipped are not tracked", True))
        problems += self._bundle_problems(info.context or {})
        _raise_problems("Variant", problems)
        return self

    def _bundle_problems(self, context: Mapping[str, Any]) -> list[Problem]:
        known: KnownBundles = context.get(KNOWN_BUNDLES) or KnownBundles()
        problems: list[Problem] = []
        if self.is_bundle and self.sku in known.component_skus:
            problems.append(
                (("bundle_components",), f"{self.sku} is a component of a bundle", self.sku)
            )
        seen: set[str] = set()
        for i, part in enumerate(self.bundle_components):
            loc = ("bundle_components", i, "sku")
            if part.sku == self.sku:
                problems.append((loc, "a bundle cannot contain itself", part.sku))
            elif part.sku in seen:
                problems.append((loc, f"{part.sku} listed twice", part.sku))
            elif part.sku in known.bundle_skus:
                problems.append((loc, f"{part.sku} is a bundle; bundles do not nest", part.sku))
            seen.add(part.sku)
        return problems


class Product(_Model):
    """A product and its variants; `id` defaults to the handle and never changes after."""

    id: Identifier
    handle: Handle
    title: Text
    description: str = Field(default="", max_length=65_535, description="Body HTML")
    vendor: OptionalText = None
    product_type: OptionalText = None
    categories: list[Category] = Field(default_factory=list, max_length=20)
    tags: list[Tag] = Field(default_factory=list, max_length=250)
    status: ProductStatus = "draft"
    images: list[Image] = Field(default_factory=list, max_length=250)
    attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict, max_length=100)
    options: list[OptionName] = Field(default_factory=list, max_length=MAX_OPTIONS)
    variants: list[Variant] = Field(min_length=1, max_length=2000)
    version: Version = 1
    updated_at: Timestamp | None = None

    @model_validator(mode="before")
    @classmethod
    def _id_defaults_to_handle(cls, data: object) -> object:
        if isinstance(data, Mapping) and data.get("id") is None and "handle" in data:
            return {**data, "id": data["handle"]}
        return data

    def variant(self, sku: str) -> Variant:
        """The variant with this SKU (KeyError if the product has none)."""
        for variant in self.variants:
            if variant.sku == sku:
                return variant
        raise KeyError(sku)

    @model_validator(mode="after")
    def _rules(self) -> Product:
        problems = _duplicates("tags", self.tags) + _duplicates("categories", self.categories)
        problems += _duplicates("options", self.options)
        problems += _duplicates("images", [image.position for image in self.images], "position")
        problems += _duplicates("variants", [v.sku for v in self.variants], "sku")
        problems += self._option_problems()
        bundle_skus = {v.sku for v in self.variants if v.is_bundle}
        for i, variant in enumerate(self.variants):
            if self.status == "active" and not variant.prices:
                problems.append((("variants", i, "prices"), "an active product needs a price", []))
            for j, part in enumerate(variant.bundle_components):
                if part.sku in bundle_skus and part.sku != variant.sku:
                    loc = ("variants", i, "bundle_components", j, "sku")
                    problems.append((loc, f"{part.sku} is a bundle; bundles do not nest", part.sku))
        _raise_problems("Product", problems)
        return self

    def _option_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        names = set(self.options)
        combinations: dict[tuple[str, ...], int] = {}
        for i, variant in enumerate(self.variants):
            given = set(variant.option_values)
            for name in sorted(given - names):
                problems.append((("variants", i, "option_values", name), "not an option", name))
            for name in self.options:
                if name not in given:
                    problems.append((("variants", i, "option_values", name), "missing", None))
            combination = tuple(variant.option_values.get(name, "") for name in self.options)
            if combination in combinations:
                first = self.variants[combinations[combination]].sku
                problems.append(
                    (("variants", i, "option_values"), f"same options as {first}", combination)
                )
            combinations.setdefault(combination, i)
        return problems


def _duplicates(name: str, values: list[Any], attribute: str | None = None) -> list[Problem]:
    seen: set[Any] = set()
    problems: list[Problem] = []
    for i, value in enumerate(values):
        key = value.casefold() if isinstance(value, str) else value
        if key in seen:
            loc: tuple[str | int, ...] = (name, i) if attribute is None else (name, i, attribute)
            problems.append((loc, f"duplicate {value}", value))
        seen.add(key)
    return problems


def content(product: Product) -> dict[str, Any]:
    """What a user edits, as JSON: equal content means re-importing it changes nothing."""
    return product.model_dump(mode="json", exclude=set(SERVER_FIELDS))


def content_digest(product: Product) -> str:
    """SHA-256 of `content`, so a store can spot an unchanged product without loading it."""
    canonical = json.dumps(content(product), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_version(product: Product, expected_version: int) -> None:
    if expected_version != product.version:
        raise StaleVersion(product.handle, expected_version, product.version)


def _check_transition(product: Product, requested: str) -> None:
    if requested != product.status and requested not in ALLOWED_TRANSITIONS[product.status]:
        raise InvalidTransition(product.handle, product.status, requested)


def _next_version(
    product: Product,
    new_content: Mapping[str, Any],
    now: datetime,
    known_bundles: KnownBundles | None,
) -> Product:
    return Product.model_validate(
        {**new_content, "id": product.id, "version": product.version + 1, "updated_at": now},
        context={KNOWN_BUNDLES: known_bundles},
    )


def _merge(target: object, patch: object) -> object:
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def apply_patch(
    product: Product,
    patch: Mapping[str, Any],
    expected_version: int,
    *,
    now: datetime,
    known_bundles: KnownBundles | None = None,
) -> Product:
    """A partial update as a JSON Merge Patch (RFC 7386) of the product's JSON form.

    Keys present replace, `null` removes (back to the default), objects merge and lists are
    replaced whole: to change one variant, send the whole `variants` list.

    Args:
        product: the current product.
        patch: the changes; `id`, `version` and `updated_at` are refused.
        expected_version: the version the caller read; another raises `StaleVersion`.
        now: the time of the change, stamped as `updated_at`.
        known_bundles: other products' bundle SKUs, to refuse bundles that nest.

    Raises:
        StaleVersion, InvalidTransition, or ValidationError naming the field.
    """
    _check_version(product, expected_version)
    _raise_problems(
        "ProductPatch",
        [
            ((key,), "set by the catalog, not by a patch", patch[key])
            for key in sorted(SERVER_FIELDS & set(patch))
        ],
    )
    if isinstance(patch.get("status"), str):
        _check_transition(product, patch["status"])
    merged = _merge(content(product), patch)
    assert isinstance(merged, Mapping)
    return _next_version(product, merged, now, known_bundles)


def replace_content(
    product: Product,
    incoming: Product,
    expected_version: int,
    *,
    now: datetime,
    known_bundles: KnownBundles | None = None,
) -> Product:
    """`product` with all of `incoming`'s content (a re-import), keeping its id.

    The store calls it only when `content` differs; an equal re-import is no change at all.
    A status change in `incoming` obeys the lifecycle like any other.
    """
    _check_version(product, expected_version)
    _check_transition(product, incoming.status)
    return _next_version(product, content(incoming), now, known_bundles)


def change_status(
    product: Product, status: ProductStatus, expected_version: int, *, now: datetime
) -> Product:
    """Move along the lifecycle (see the module doc); `InvalidTransition` if not allowed."""
    _check_version(product, expected_version)
    if status == product.status or status not in ALLOWED_TRANSITIONS[product.status]:
        raise InvalidTransition(product.handle, product.status, status)
    return _next_version(product, {**content(product), "status": status}, now, None)


def discontinue(product: Product, expected_version: int, *, now: datetime) -> Product:
    """Stop selling the product: every variant goes out with status discontinued."""
    return change_status(product, "discontinued", expected_version, now=now)


def reactivate(product: Product, expected_version: int, *, now: datetime) -> Product:
    """The one way out of discontinued: back to draft, to be reviewed and activated again."""
    _check_version(product, expected_version)
    if product.status != "discontinued":
        raise InvalidTransition(product.handle, product.status, "draft")
    return _next_version(product, {**content(product), "status": "draft"}, now, None)


def variant_state(product: Product, variant: Variant) -> dict[str, Any]:
    """The full state of one variant, as JSON, for the compacted `catalog.products.v1`.

    Its fields are exactly those of the `CatalogVariantUpserted` contract: the variant's own
    plus the product fields a consumer needs, so no reader ever has to join two messages.
    """
    if variant not in product.variants:
        raise CatalogError(f"{variant.sku} as given is not a variant of {product.handle}")
    if product.updated_at is None:
        raise CatalogError(f"{product.handle} is published only once stored (no updated_at)")
    own = variant.model_dump(mode="json")
    shared = product.model_dump(
        mode="json",
        include={"handle", "title", "status", "vendor", "product_type", "version", "updated_at"},
    )
    return {**own, **shared, "product_id": product.id}
