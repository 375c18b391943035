"""The catalog's rules, driven directly on the pure domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from stockflow.catalog.domain import (
    ALLOWED_TRANSITIONS,
    KNOWN_BUNDLES,
    CatalogError,
    InvalidTransition,
    KnownBundles,
    Product,
    StaleVersion,
    apply_patch,
    change_status,
    content,
    content_digest,
    discontinue,
    gtin_check_digit,
    is_valid_gtin,
    reactivate,
    replace_content,
    variant_state,
)
from stockflow.contracts.events.catalog import CatalogVariantUpserted

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def variant(sku: str = "TEE-S-BLK", **fields: Any) -> dict[str, Any]:
    return {"sku": sku, "prices": [usd("19.00")], **fields}


def tee(**fields: Any) -> dict[str, Any]:
    """A valid two-variant product as the API would receive it; fields override."""
    return {
        "handle": "classic-tee",
        "title": "Classic Tee",
        "status": "active",
        "options": ["Size", "Colour"],
        "variants": [
            variant("TEE-S-BLK", option_values={"Size": "S", "Colour": "Black"}),
            variant("TEE-M-BLK", option_values={"Size": "M", "Colour": "Black"}),
        ],
        **fields,
    }


def single(**variant_fields: Any) -> dict[str, Any]:
    """A product with one variant and no options; variant_fields override."""
    return {"handle": "thing", "title": "Thing", "variants": [variant("THING", **variant_fields)]}


def error_locs(data: dict[str, Any], context: dict[str, Any] | None = None) -> list[tuple]:
    with pytest.raises(ValidationError) as raised:
        Product.model_validate(data, context=context)
    return [error["loc"] for error in raised.value.errors()]


# --- GTIN ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "96385074",  # GTIN-8 (EAN-8)
        "036000291452",  # GTIN-12 (UPC-A)
        "4006381333931",  # GTIN-13 (EAN-13)
        "9780306406157",  # ISBN-13, a GTIN-13 too
        "5901234123457",  # GS1's EAN-13 example
        "10614141000415",  # GTIN-14 (case of a trade item)
    ],
)
def test_real_gtins_pass_their_check_digit(code: str) -> None:
    assert is_valid_gtin(code)
    assert Product.model_validate(single(barcode=code)).variants[0].barcode == code


@pytest.mark.parametrize("code", ["96385075", "036000291453", "4006381333932", "10614141000416"])
def test_a_wrong_check_digit_is_refused_naming_the_barcode(code: str) -> None:
    assert not is_valid_gtin(code)
    assert error_locs(single(barcode=code)) == [("variants", 0, "barcode")]


@pytest.mark.parametrize("code", ["4006381", "40063813339", "400638133393100", "4OO6381333931"])
def test_a_barcode_of_the_wrong_shape_is_refused(code: str) -> None:
    assert error_locs(single(barcode=code)) == [("variants", 0, "barcode")]


def test_a_numeric_barcode_is_refused_since_it_loses_leading_zeros() -> None:
    assert error_locs(single(barcode=36000291452)) == [("variants", 0, "barcode")]


def test_gtin_check_digit_is_gs1_mod_10() -> None:
    assert gtin_check_digit("400638133393") == 1
    assert gtin_check_digit("03600029145") == 2


# --- SKU, handle, currency, price ----------------------------------------------------------


@pytest.mark.parametrize("sku", ["A", "TEE-S-BLK", "sku_1.2", "9" * 64])
def test_sku_pattern_accepts(sku: str) -> None:
    Product.model_validate({**single(), "variants": [variant(sku)]})


@pytest.mark.parametrize("sku", ["", "-TEE", ".x", "TEE S", "TÉE", "A/B", "9" * 65])
def test_sku_pattern_refuses(sku: str) -> None:
    assert error_locs({**single(), "variants": [variant(sku)]}) == [("variants", 0, "sku")]


@pytest.mark.parametrize("handle", ["Classic-Tee", "classic tee", "-tee", "tee_1", ""])
def test_handle_is_lowercase_letters_digits_and_dashes(handle: str) -> None:
    assert ("handle",) in error_locs(tee(handle=handle))


def test_id_defaults_to_the_handle() -> None:
    assert Product.model_validate(tee()).id == "classic-tee"


@pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "EURO"])
def test_currency_must_be_iso_4217(currency: str) -> None:
    data = single(prices=[{"amount": "1.00", "currency": currency}])
    assert error_locs(data) == [("variants", 0, "prices", 0, "currency")]


@pytest.mark.parametrize(
    ("amount", "currency"), [("12.345", "USD"), ("1200.5", "JPY"), ("1.2345", "BHD")]
)
def test_price_cannot_be_finer_than_the_currency_minor_unit(amount: str, currency: str) -> None:
    data = single(prices=[{"amount": amount, "currency": currency}])
    assert error_locs(data) == [("variants", 0, "prices", 0, "amount")]


def test_prices_are_normalised_to_the_currency_minor_unit() -> None:
    prices = [
        usd("12.5"),
        {"amount": "1200", "currency": "JPY"},
        {"amount": "1.5", "currency": "BHD"},
    ]
    dumped = Product.model_validate(single(prices=prices)).model_dump(mode="json")
    assert [p["amount"] for p in dumped["variants"][0]["prices"]] == ["12.50", "1200", "1.500"]


@pytest.mark.parametrize("amount", ["-1.00", 12.5, "12.5e1", "$12", "12,50"])
def test_price_is_a_non_negative_decimal_string(amount: object) -> None:
    data = single(prices=[{"amount": amount, "currency": "USD"}])
    assert error_locs(data) == [("variants", 0, "prices", 0, "amount")]


def test_several_currencies_but_one_price_per_currency() -> None:
    eur = {"amount": "17.00", "currency": "EUR"}
    Product.model_validate(single(prices=[usd("19.00"), eur]))
    assert error_locs(single(prices=[usd("19.00"), eur, usd("18.00")])) == [
        ("variants", 0, "prices", 2, "currency")
    ]


def test_compare_at_price_needs_a_price_in_its_currency_and_must_be_above_it() -> None:
    Product.model_validate(single(compare_at_prices=[usd("25.00")]))
    assert error_locs(single(compare_at_prices=[usd("19.00")])) == [
        ("variants", 0, "compare_at_prices", 0, "amount")
    ]
    gbp = {"amount": "25.00", "currency": "GBP"}
    assert error_locs(single(compare_at_prices=[gbp])) == [("variants", 0, "compare_at_prices", 0)]


def test_an_active_product_needs_a_price_a_draft_may_wait() -> None:
    Product.model_validate({**single(prices=[]), "status": "draft"})
    assert error_locs({**single(prices=[]), "status": "active"}) == [("variants", 0, "prices")]


# --- options -------------------------------------------------------------------------------


def test_option_values_must_match_the_product_options() -> None:
    data = tee()
    data["variants"][1]["option_values"] = {"Size": "M", "Color": "Black"}
    assert sorted(error_locs(data)) == [
        ("variants", 1, "option_values", "Color"),
        ("variants", 1, "option_values", "Colour"),
    ]


def test_two_variants_cannot_share_option_values() -> None:
    data = tee()
    data["variants"][1]["option_values"] = {"Size": "S", "Colour": "Black"}
    assert error_locs(data) == [("variants", 1, "option_values")]


def test_without_options_a_product_has_a_single_variant() -> None:
    data = {**single(), "variants": [variant("A"), variant("B")]}
    assert error_locs(data) == [("variants", 1, "option_values")]


def test_at_most_three_distinct_options() -> None:
    assert error_locs(tee(options=["Size", "Colour", "Fit", "Length"])) == [("options",)]
    data = tee(options=["Size", "size"])
    assert ("options", 1) in error_locs(data)


def test_sku_is_unique_within_a_product() -> None:
    data = tee()
    data["variants"][1]["sku"] = "TEE-S-BLK"
    assert error_locs(data) == [("variants", 1, "sku")]


def test_a_product_has_at_least_one_variant() -> None:
    assert error_locs(tee(variants=[])) == [("variants",)]


# --- inventory flags and bundles -----------------------------------------------------------


def test_goods_that_are_not_shipped_are_not_tracked() -> None:
    Product.model_validate(single(requires_shipping=False, tracked=False))
    assert error_locs(single(requires_shipping=False)) == [("variants", 0, "tracked")]


def kit(*components: tuple[str, int], **fields: Any) -> dict[str, Any]:
    parts = [{"sku": sku, "quantity": quantity} for sku, quantity in components]
    return {**single(bundle_components=parts, tracked=False), **fields}


def test_a_bundle_lists_components_with_positive_quantities() -> None:
    product = Product.model_validate(kit(("TEE-S-BLK", 2), ("MUG", 1)))
    assert product.variants[0].is_bundle
    assert error_locs(kit(("MUG", 0))) == [("variants", 0, "bundle_components", 0, "quantity")]


def test_a_bundle_is_not_tracked_itself() -> None:
    data = kit(("MUG", 1))
    data["variants"][0]["tracked"] = True
    assert error_locs(data) == [("variants", 0, "tracked")]


def test_a_bundle_cannot_contain_itself_or_a_component_twice() -> None:
    assert error_locs(kit(("THING", 1))) == [("variants", 0, "bundle_components", 0, "sku")]
    assert error_locs(kit(("MUG", 1), ("MUG", 2))) == [
        ("variants", 0, "bundle_components", 1, "sku")
    ]


def test_bundles_do_not_nest_within_a_product() -> None:
    data = tee(options=[])
    data = {
        **data,
        "options": ["Pack"],
        "variants": [
            variant("PACK-2", option_values={"Pack": "2"}, tracked=False,
                    bundle_components=[{"sku": "MUG", "quantity": 2}]),
            variant("PACK-4", option_values={"Pack": "4"}, tracked=False,
                    bundle_components=[{"sku": "PACK-2", "quantity": 2}]),
        ],
    }  # fmt: skip
    assert error_locs(data) == [("variants", 1, "bundle_components", 0, "sku")]


def test_bundles_do_not_nest_across_products() -> None:
    others = KnownBundles(bundle_skus={"GIFT-BOX"}, component_skus={"THING"})
    context = {KNOWN_BUNDLES: others}
    assert error_locs(kit(("GIFT-BOX", 1)), context) == [
        ("variants", 0, "bundle_components"),  # THING is in someone's bundle already
        ("variants", 0, "bundle_components", 0, "sku"),  # GIFT-BOX is a bundle
    ]


# --- other product fields ------------------------------------------------------------------


def test_attributes_keep_their_type_through_json() -> None:
    attributes = {
        "material": "cotton",
        "gsm": 180,
        "ratio": 0.35,
        "organic": True,
        "width_cm": Decimal("91.50"),
    }
    product = Product.model_validate(tee(attributes=attributes))
    again = Product.model_validate_json(product.model_dump_json())
    assert again == product
    assert {name: type(value) for name, value in again.attributes.items()} == {
        "material": str,
        "gsm": int,
        "ratio": float,
        "organic": bool,
        "width_cm": Decimal,
    }


@pytest.mark.parametrize(
    ("attributes", "loc"),
    [
        ({"gsm": float("nan")}, ("attributes", "gsm")),
        ({"gsm": [180]}, ("attributes", "gsm")),
        ({"fill": {"decimal": "abc"}}, ("attributes", "fill")),
        ({"fill": {"decimal": "Infinity"}}, ("attributes", "fill")),
        ({"Bad Name": 1}, ("attributes", "Bad Name", "[key]")),
    ],
)
def test_attribute_names_and_values_are_checked(attributes: dict, loc: tuple) -> None:
    assert error_locs(tee(attributes=attributes)) == [loc]


def test_images_need_an_http_url_and_distinct_positions() -> None:
    image = {"url": "https://cdn.example.com/a.jpg", "alt": "front", "position": 1}
    Product.model_validate(tee(images=[image]))
    assert error_locs(tee(images=[image, {**image, "position": 1}])) == [("images", 1, "position")]
    assert error_locs(tee(images=[{**image, "url": "ftp://x/a.jpg"}])) == [("images", 0, "url")]


def test_tags_hold_no_comma_and_do_not_repeat() -> None:
    assert error_locs(tee(tags=["summer, sale"])) == [("tags", 0)]
    assert error_locs(tee(tags=["Summer", "summer"])) == [("tags", 1)]


def test_unknown_fields_are_refused_by_name() -> None:
    assert error_locs(tee(colour="red")) == [("colour",)]


def test_blank_vendor_means_none_so_csv_and_json_agree() -> None:
    assert Product.model_validate(tee(vendor="  ")).vendor is None


def test_the_json_schema_can_be_generated_for_openapi() -> None:
    schema = Product.model_json_schema()
    assert {"handle", "variants", "attributes"} <= set(schema["properties"])


# --- versions, patches, lifecycle ----------------------------------------------------------


@pytest.fixture
def stored() -> Product:
    return Product.model_validate(tee(vendor="Northwind", version=3, updated_at=NOW))


LATER = NOW + timedelta(minutes=5)


def test_a_patch_changes_only_what_it_names_and_bumps_the_version(stored: Product) -> None:
    patched = apply_patch(stored, {"title": "Classic Tee 2"}, 3, now=LATER)
    assert (patched.title, patched.version, patched.updated_at) == ("Classic Tee 2", 4, LATER)
    assert content(patched) == {**content(stored), "title": "Classic Tee 2"}
    assert stored.version == 3  # the original is untouched


def test_a_patch_against_an_old_version_is_stale(stored: Product) -> None:
    with pytest.raises(StaleVersion) as raised:
        apply_patch(stored, {"title": "x"}, 2, now=LATER)
    assert (raised.value.expected, raised.value.actual) == (2, 3)


def test_merge_patch_null_removes_objects_merge_lists_replace(stored: Product) -> None:
    with_attributes = apply_patch(stored, {"attributes": {"gsm": 180, "fit": "slim"}}, 3, now=LATER)
    patched = apply_patch(
        with_attributes,
        {"vendor": None, "attributes": {"fit": None}, "tags": ["new"]},
        4,
        now=LATER,
    )
    assert (patched.vendor, patched.attributes, patched.tags) == (None, {"gsm": 180}, ["new"])


def test_a_patch_to_one_variant_sends_the_whole_list(stored: Product) -> None:
    variants = content(stored)["variants"]
    variants[0]["prices"] = [usd("21.00")]
    patched = apply_patch(stored, {"variants": variants}, 3, now=LATER)
    assert patched.variant("TEE-S-BLK").prices[0].amount == Decimal("21.00")
    assert patched.variant("TEE-M-BLK") == stored.variant("TEE-M-BLK")


def test_an_invalid_patch_names_the_field(stored: Product) -> None:
    variants = content(stored)["variants"]
    variants[1]["barcode"] = "4006381333932"
    with pytest.raises(ValidationError) as raised:
        apply_patch(stored, {"variants": variants}, 3, now=LATER)
    assert [e["loc"] for e in raised.value.errors()] == [("variants", 1, "barcode")]


@pytest.mark.parametrize("field", ["id", "version", "updated_at"])
def test_server_fields_cannot_be_patched(stored: Product, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        apply_patch(stored, {field: "x"}, 3, now=LATER)
    assert [e["loc"] for e in raised.value.errors()] == [(field,)]


@pytest.mark.parametrize(
    ("current", "requested", "allowed"),
    [
        ("draft", "active", True),
        ("draft", "discontinued", True),
        ("active", "draft", True),
        ("active", "discontinued", True),
        ("discontinued", "active", False),
        ("discontinued", "draft", False),
        ("active", "active", False),
    ],
)
def test_status_transitions(current: str, requested: str, allowed: bool) -> None:
    product = Product.model_validate(tee(status=current))
    assert (requested in ALLOWED_TRANSITIONS[current]) is allowed
    if allowed:
        assert change_status(product, requested, 1, now=LATER).status == requested  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidTransition):
            change_status(product, requested, 1, now=LATER)  # type: ignore[arg-type]


def test_discontinued_is_final_for_patches_but_content_can_be_corrected(stored: Product) -> None:
    gone = discontinue(stored, 3, now=LATER)
    assert (gone.status, gone.version) == ("discontinued", 4)
    with pytest.raises(InvalidTransition):
        apply_patch(gone, {"status": "active"}, 4, now=LATER)
    assert apply_patch(gone, {"title": "Old Tee"}, 4, now=LATER).status == "discontinued"


def test_reactivation_is_explicit_and_lands_in_draft(stored: Product) -> None:
    with pytest.raises(InvalidTransition):
        reactivate(stored, 3, now=LATER)
    back = reactivate(discontinue(stored, 3, now=LATER), 4, now=LATER)
    assert (back.status, back.version) == ("draft", 5)


def test_status_changes_check_the_version_too(stored: Product) -> None:
    with pytest.raises(StaleVersion):
        discontinue(stored, 1, now=LATER)


def test_replace_content_keeps_the_id_and_obeys_the_lifecycle(stored: Product) -> None:
    incoming = Product.model_validate(tee(id="other", title="Reimported", status="draft"))
    replaced = replace_content(stored, incoming, 3, now=LATER)
    assert (replaced.id, replaced.title, replaced.version) == ("classic-tee", "Reimported", 4)
    gone = discontinue(stored, 3, now=LATER)
    with pytest.raises(InvalidTransition):
        replace_content(gone, incoming, 4, now=LATER)


def test_content_ignores_what_the_catalog_stamps(stored: Product) -> None:
    fresh = Product.model_validate(tee(vendor="Northwind"))
    assert content(fresh) == content(stored)
    assert content_digest(fresh) == content_digest(stored)
    assert content_digest(apply_patch(stored, {"title": "x"}, 3, now=LATER)) != content_digest(
        stored
    )


# --- the state on catalog.products.v1 ------------------------------------------------------


def test_variant_state_is_exactly_the_published_contract(stored: Product) -> None:
    state = variant_state(stored, stored.variants[1])
    assert set(state) == set(CatalogVariantUpserted.model_fields)
    event = CatalogVariantUpserted.model_validate(state)
    assert event.key() == "TEE-M-BLK"
    assert (state["handle"], state["title"], state["status"], state["vendor"]) == (
        "classic-tee",
        "Classic Tee",
        "active",
        "Northwind",
    )
    assert (state["version"], state["updated_at"]) == (3, "2025-03-01T12:00:00Z")
    assert state["option_values"] == {"Size": "M", "Colour": "Black"}
    assert state["prices"] == [{"amount": "19.00", "currency": "USD"}]


def test_variant_state_follows_a_discontinue(stored: Product) -> None:
    gone = discontinue(stored, 3, now=LATER)
    assert {variant_state(gone, v)["status"] for v in gone.variants} == {"discontinued"}


def test_variant_state_needs_a_stored_product_and_its_own_variant(stored: Product) -> None:
    with pytest.raises(CatalogError):
        variant_state(Product.model_validate(tee()), stored.variants[0])
    foreign = Product.model_validate(single()).variants[0]
    with pytest.raises(CatalogError):
        variant_state(stored, foreign)
