"""The home / e-commerce taxonomy behind the synthetic catalog: product types and their facets.

Each product type lists the values its facets can take (material, colour, size), a price range,
query synonyms, and the closely related types that shoppers accept as partial matches
(grade 1 in the synthetic judgments). Brands belong to departments. All names are invented.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BRANDS", "COLOUR_SYNONYMS", "MATERIAL_SYNONYMS", "PRODUCT_LINES", "PRODUCT_TYPES", "ProductType"]


@dataclass(frozen=True)
class ProductType:
    name: str  # canonical, lower case, singular as sold ("sofa", "curtains")
    department: str
    synonyms: tuple[str, ...]
    materials: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    price: tuple[float, float]  # USD range before material/size adjustments
    related: tuple[str, ...] = ()


NEUTRALS = ("white", "black", "gray", "beige", "brown", "charcoal", "ivory")
BOLD = ("navy blue", "emerald green", "mustard yellow", "terracotta", "blush pink", "teal")
PASTELS = ("sage green", "light blue", "blush pink", "lavender")
WOODS = ("natural", "walnut", "oak", "espresso", "white", "black")
FINISHES = ("chrome", "brushed nickel", "matte black", "oil-rubbed bronze", "brass")
APPLIANCE = ("black", "white", "silver", "red")
BED_SIZES = ("twin", "full", "queen", "king")

COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "gray": ("grey",),
    "charcoal": ("charcoal gray", "charcoal grey"),
    "navy blue": ("navy",),
    "matte black": ("black",),
    "brushed nickel": ("satin nickel",),
    "multicolor": ("multi color", "multicolour"),
}

MATERIAL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "solid wood": ("wood", "wooden"),
    "stainless steel": ("stainless",),
    "engineered wood": ("mdf",),
    "faux leather": ("vegan leather", "pu leather"),
    "memory foam": ("foam",),
    "cast iron": ("cast-iron",),
    "nonstick aluminum": ("nonstick", "non-stick"),
    "resin wicker": ("wicker", "all-weather wicker"),
    "polypropylene": ("poly",),
}

BRANDS: dict[str, tuple[str, ...]] = {
    "Living Room": ("Hearthwood", "NordHaus", "Amberline", "Castor & Pine", "Westvale Home"),
    "Bedroom": ("Slumberwell", "Dreamhaven", "Oakridge Mills", "Linnea Living"),
    "Bedding & Bath Linens": ("Cotton Crest", "Pure Loom", "Aurelia Linens", "Hush & Co."),
    "Bathroom Fixtures": ("Aquaverde", "Kessler Bath", "Rainmaker", "Brookstone Plumbing"),
    "Kitchen & Dining": ("Copperleaf", "Fenwick & Salt", "Iron Hearth", "Mesa Kitchen", "Bellamy"),
    "Lighting": ("Lumora", "Brightwell", "Halden Lighting", "Northlight Co."),
    "Decor": ("Marlowe & Finch", "Saltbox Studio", "Terra Nova Home", "Everleigh"),
    "Outdoor & Garden": ("Patio Ridge", "Greenfield Outdoor", "Coastline Living", "Sunward"),
    "Tools & Hardware": ("Ironclad", "Forgeline", "Truecut", "Summit Pro", "Bolt & Anchor"),
    "Appliances": ("Clearbreeze", "Polar Home", "Evergreen Appliance", "Haus & Hearth"),
    "Storage & Organization": ("Tidyform", "Keepwell", "Arden Storage", "Nestable"),
}

# Collection names that make titles read like real listings ("NordHaus Aspen 3-Seat Sofa").
PRODUCT_LINES = (
    "Aspen", "Harbor", "Linnea", "Mesa", "Oslo", "Cascade", "Willow", "Summit", "Marlow", "Sierra",
    "Brooklyn", "Hampton", "Juniper", "Cypress", "Avalon", "Kingsley", "Tahoe", "Everett", "Monroe",
    "Sedona", "Halston", "Beacon", "Ridgeway", "Solstice", "Verona", "Dalton", "Emery", "Fairview",
)


def _t(name, department, synonyms, materials, colours, sizes, price, related=()):
    return ProductType(name, department, tuple(synonyms), tuple(materials), tuple(colours), tuple(sizes), price, tuple(related))


PRODUCT_TYPES: tuple[ProductType, ...] = (
    # Living room
    _t("sofa", "Living Room", ["couch", "settee"], ["fabric", "velvet", "leather", "linen"], NEUTRALS + BOLD, ["2-seat", "3-seat", "4-seat"], (399, 1899), ["loveseat", "sectional sofa", "sleeper sofa"]),
    _t("loveseat", "Living Room", ["two seater sofa", "small sofa"], ["fabric", "velvet", "leather"], NEUTRALS + BOLD, ["52 in.", "58 in.", "64 in."], (299, 999), ["sofa", "sleeper sofa"]),
    _t("sectional sofa", "Living Room", ["sectional", "l-shaped couch"], ["fabric", "velvet", "leather", "performance fabric"], NEUTRALS, ["3-piece", "4-piece", "5-piece"], (899, 3299), ["sofa"]),
    _t("sleeper sofa", "Living Room", ["sofa bed", "pull out couch"], ["fabric", "faux leather", "microfiber"], NEUTRALS, ["full", "queen"], (599, 1799), ["sofa", "futon"]),
    _t("futon", "Living Room", ["futon couch"], ["fabric", "faux leather", "microfiber"], NEUTRALS, ["twin", "full"], (199, 599), ["sleeper sofa"]),
    _t("armchair", "Living Room", ["club chair", "lounge chair"], ["fabric", "velvet", "leather", "boucle"], NEUTRALS + BOLD, [], (249, 999), ["accent chair", "recliner"]),
    _t("accent chair", "Living Room", ["occasional chair", "side chair"], ["velvet", "boucle", "rattan", "linen"], NEUTRALS + BOLD, [], (179, 699), ["armchair"]),
    _t("recliner", "Living Room", ["reclining chair", "recliner chair"], ["leather", "faux leather", "microfiber"], NEUTRALS, ["standard", "oversized", "wall hugger"], (349, 1299), ["armchair"]),
    _t("ottoman", "Living Room", ["footstool", "pouf"], ["velvet", "leather", "jute", "boucle"], NEUTRALS + BOLD, ["18 in.", "24 in.", "36 in."], (69, 349), ["storage bench"]),
    _t("storage bench", "Living Room", ["entryway bench"], ["solid wood", "engineered wood", "fabric"], WOODS, ["36 in.", "42 in.", "48 in."], (99, 399), ["ottoman"]),
    _t("coffee table", "Living Room", ["cocktail table"], ["solid wood", "glass", "marble", "engineered wood", "metal"], WOODS, ["36 in.", "42 in.", "48 in."], (129, 899), ["side table", "console table"]),
    _t("side table", "Living Room", ["end table", "accent table"], ["solid wood", "glass", "marble", "metal"], WOODS, ["18 in.", "22 in.", "24 in."], (59, 399), ["coffee table", "nightstand"]),
    _t("console table", "Living Room", ["entryway table", "sofa table"], ["solid wood", "engineered wood", "metal", "glass"], WOODS, ["42 in.", "48 in.", "60 in."], (119, 699), ["coffee table"]),
    _t("tv stand", "Living Room", ["media console", "entertainment center"], ["solid wood", "engineered wood", "metal"], WOODS, ["55 in.", "65 in.", "75 in."], (149, 899), ["console table"]),
    _t("bookshelf", "Living Room", ["bookcase", "book shelf"], ["solid wood", "engineered wood", "metal", "bamboo"], WOODS, ["3-shelf", "5-shelf", "6-shelf"], (69, 499), ["cube storage organizer", "shelving unit"]),
    # Bedroom
    _t("bed frame", "Bedroom", ["platform bed", "bed"], ["solid wood", "metal", "upholstered fabric"], WOODS + ("gray",), BED_SIZES, (199, 1299), ["headboard"]),
    _t("headboard", "Bedroom", ["upholstered headboard", "bed headboard"], ["upholstered fabric", "solid wood", "metal", "rattan"], NEUTRALS, BED_SIZES, (99, 599), ["bed frame"]),
    _t("nightstand", "Bedroom", ["bedside table", "night table"], ["solid wood", "engineered wood", "rattan"], WOODS, ["1-drawer", "2-drawer", "3-drawer"], (79, 449), ["side table", "dresser"]),
    _t("dresser", "Bedroom", ["chest of drawers", "bureau"], ["solid wood", "engineered wood"], WOODS, ["3-drawer", "6-drawer", "9-drawer"], (199, 1499), ["nightstand", "wardrobe"]),
    _t("wardrobe", "Bedroom", ["armoire", "clothes closet"], ["solid wood", "engineered wood", "metal"], WOODS, ["2-door", "3-door", "4-door"], (249, 1299), ["dresser"]),
    _t("mattress", "Bedroom", ["bed mattress"], ["memory foam", "hybrid", "innerspring", "latex"], [], BED_SIZES, (249, 1999), ["mattress topper"]),
    # Bedding and bath linens
    _t("sheet set", "Bedding & Bath Linens", ["bed sheets", "sheets"], ["cotton", "linen", "bamboo", "microfiber", "flannel"], NEUTRALS + PASTELS, BED_SIZES, (29, 249), ["pillowcase", "duvet cover"]),
    _t("duvet cover", "Bedding & Bath Linens", ["duvet cover set", "comforter cover"], ["cotton", "linen", "percale", "microfiber"], NEUTRALS + PASTELS, BED_SIZES, (49, 299), ["comforter", "sheet set"]),
    _t("comforter", "Bedding & Bath Linens", ["comforter set"], ["down alternative", "goose down", "cotton"], NEUTRALS + PASTELS, BED_SIZES, (59, 399), ["duvet cover", "quilt"]),
    _t("quilt", "Bedding & Bath Linens", ["coverlet", "quilt set"], ["cotton", "linen", "microfiber"], NEUTRALS + PASTELS, BED_SIZES, (49, 249), ["comforter", "throw blanket"]),
    _t("pillow", "Bedding & Bath Linens", ["bed pillow", "sleeping pillow"], ["memory foam", "down", "down alternative", "shredded foam"], [], ["standard", "queen", "king"], (19, 149), ["pillowcase", "throw pillow"]),
    _t("pillowcase", "Bedding & Bath Linens", ["pillow case", "pillowcases"], ["cotton", "silk", "linen", "satin"], NEUTRALS + PASTELS, ["standard", "king"], (12, 69), ["sheet set", "pillow"]),
    _t("throw blanket", "Bedding & Bath Linens", ["throw", "couch blanket"], ["fleece", "knit cotton", "faux fur", "wool", "sherpa"], NEUTRALS + BOLD, ["50 in. x 60 in.", "60 in. x 80 in."], (25, 149), ["quilt", "throw pillow"]),
    _t("mattress topper", "Bedding & Bath Linens", ["mattress pad"], ["memory foam", "down alternative", "latex"], [], BED_SIZES, (49, 299), ["mattress"]),
    _t("bath towel", "Bedding & Bath Linens", ["towel", "shower towel"], ["cotton", "turkish cotton", "bamboo", "microfiber"], NEUTRALS + PASTELS, ["standard", "oversized"], (12, 59), ["hand towel"]),
    _t("hand towel", "Bedding & Bath Linens", ["guest towel"], ["cotton", "turkish cotton", "linen"], NEUTRALS + PASTELS, ["set of 2", "set of 4"], (9, 39), ["bath towel"]),
    _t("bath mat", "Bedding & Bath Linens", ["bath rug", "bathroom rug"], ["memory foam", "cotton", "bamboo", "chenille"], NEUTRALS + PASTELS, ["17 in. x 24 in.", "20 in. x 32 in."], (14, 69), ["shower curtain"]),
    _t("shower curtain", "Bedding & Bath Linens", ["bath curtain"], ["polyester", "cotton", "linen", "waffle weave"], NEUTRALS + PASTELS, ["72 in. x 72 in.", "72 in. x 84 in."], (19, 89), ["shower curtain liner", "bath mat"]),
    _t("shower curtain liner", "Bedding & Bath Linens", ["shower liner"], ["peva", "polyester"], ("clear", "white", "frosted"), ["70 in. x 72 in.", "72 in. x 84 in."], (8, 29), ["shower curtain"]),
    # Bathroom fixtures
    _t("bathroom faucet", "Bathroom Fixtures", ["bathroom sink faucet", "lavatory faucet"], ["brass", "stainless steel"], FINISHES, ["single hole", "4 in. centerset", "8 in. widespread"], (59, 399), ["kitchen faucet"]),
    _t("kitchen faucet", "Bathroom Fixtures", ["kitchen sink faucet"], ["brass", "stainless steel"], FINISHES, ["pull-down", "pull-out", "single-handle"], (89, 549), ["bathroom faucet"]),
    _t("shower head", "Bathroom Fixtures", ["showerhead", "rain shower head"], ["stainless steel", "brass", "plastic"], FINISHES, ["6 in.", "8 in.", "10 in.", "12 in."], (29, 299), ["handheld shower"]),
    _t("handheld shower", "Bathroom Fixtures", ["hand shower", "handheld shower head"], ["stainless steel", "brass", "plastic"], FINISHES, ["5-spray", "7-spray"], (29, 199), ["shower head"]),
    _t("towel bar", "Bathroom Fixtures", ["towel rack", "towel rail"], ["stainless steel", "brass", "zinc"], FINISHES, ["18 in.", "24 in.", "30 in."], (19, 119), ["towel ring", "toilet paper holder"]),
    _t("towel ring", "Bathroom Fixtures", ["hand towel holder"], ["stainless steel", "brass", "zinc"], FINISHES, [], (14, 69), ["towel bar"]),
    _t("toilet paper holder", "Bathroom Fixtures", ["tp holder", "toilet roll holder"], ["stainless steel", "brass", "zinc"], FINISHES, [], (12, 69), ["towel ring"]),
    _t("vanity mirror", "Bathroom Fixtures", ["bathroom mirror"], ["aluminum frame", "wood frame", "frameless glass"], ("black", "gold", "silver", "white"), ["24 in. x 30 in.", "30 in. x 36 in."], (69, 399), ["wall mirror"]),
    _t("bathroom vanity", "Bathroom Fixtures", ["vanity cabinet", "bath vanity"], ["solid wood", "engineered wood"], ("white", "gray", "espresso", "navy blue"), ["24 in.", "30 in.", "36 in.", "48 in."], (249, 1499), ["vanity mirror"]),
    # Kitchen and dining
    _t("frying pan", "Kitchen & Dining", ["skillet", "fry pan"], ["cast iron", "stainless steel", "nonstick aluminum", "carbon steel"], ("black", "silver", "copper", "red", "gray"), ["8 in.", "10 in.", "12 in."], (19, 149), ["saucepan", "wok"]),
    _t("saucepan", "Kitchen & Dining", ["sauce pan", "pot with lid"], ["stainless steel", "nonstick aluminum", "copper"], ("silver", "black", "copper", "red"), ["1 qt.", "2 qt.", "3 qt."], (24, 149), ["stock pot", "frying pan"]),
    _t("stock pot", "Kitchen & Dining", ["soup pot", "stockpot"], ["stainless steel", "enameled steel", "nonstick aluminum"], ("silver", "black", "red"), ["6 qt.", "8 qt.", "12 qt."], (29, 179), ["dutch oven", "saucepan"]),
    _t("dutch oven", "Kitchen & Dining", ["cocotte", "enameled pot"], ["enameled cast iron", "cast iron"], ("red", "navy blue", "sage green", "white", "black", "orange"), ["4.5 qt.", "5.5 qt.", "7 qt."], (49, 399), ["stock pot"]),
    _t("cookware set", "Kitchen & Dining", ["pots and pans set", "pan set"], ["stainless steel", "nonstick aluminum", "copper", "ceramic"], ("silver", "black", "gray", "copper", "cream"), ["5-piece", "10-piece", "12-piece"], (79, 699), ["frying pan", "saucepan"]),
    _t("wok", "Kitchen & Dining", ["stir fry pan"], ["carbon steel", "cast iron", "nonstick aluminum"], ("black", "silver"), ["12 in.", "14 in."], (29, 129), ["frying pan"]),
    _t("chef's knife", "Kitchen & Dining", ["chef knife", "kitchen knife", "cooks knife"], ["high-carbon stainless steel", "damascus steel", "ceramic"], ("black", "walnut", "silver"), ["6 in.", "8 in.", "10 in."], (29, 249), ["santoku knife", "knife block set"]),
    _t("santoku knife", "Kitchen & Dining", ["santoku"], ["high-carbon stainless steel", "damascus steel", "ceramic"], ("black", "walnut", "silver"), ["5 in.", "7 in."], (24, 199), ["chef's knife"]),
    _t("knife block set", "Kitchen & Dining", ["knife set", "kitchen knife set"], ["high-carbon stainless steel", "stainless steel"], ("black", "walnut", "natural"), ["6-piece", "12-piece", "15-piece"], (59, 499), ["chef's knife"]),
    _t("cutting board", "Kitchen & Dining", ["chopping board"], ["bamboo", "acacia wood", "maple", "plastic"], ("natural", "walnut", "white"), ["12 in. x 18 in.", "15 in. x 20 in.", "18 in. x 24 in."], (15, 99), []),
    _t("dinnerware set", "Kitchen & Dining", ["dish set", "dishes set", "plates and bowls set"], ["stoneware", "porcelain", "melamine", "bone china"], ("white", "gray", "navy blue", "sage green", "speckled beige"), ["12-piece", "16-piece", "32-piece"], (49, 299), ["dinner plate"]),
    _t("dinner plate", "Kitchen & Dining", ["plates", "dinner plates"], ["stoneware", "porcelain", "melamine"], ("white", "gray", "navy blue", "sage green"), ["set of 4", "set of 6"], (24, 99), ["dinnerware set"]),
    _t("drinking glasses", "Kitchen & Dining", ["glassware set", "tumblers"], ["glass", "crystal", "acrylic"], ("clear", "smoke gray", "amber"), ["set of 4", "set of 6", "set of 8"], (19, 89), ["wine glasses"]),
    _t("wine glasses", "Kitchen & Dining", ["wine glass set", "stemware"], ["glass", "crystal"], ("clear", "smoke gray"), ["set of 2", "set of 4", "set of 6"], (24, 129), ["drinking glasses"]),
    _t("coffee maker", "Kitchen & Dining", ["coffee machine", "drip coffee maker"], ["stainless steel", "plastic"], APPLIANCE, ["single-serve", "5-cup", "12-cup"], (29, 249), ["espresso machine", "electric kettle"]),
    _t("espresso machine", "Kitchen & Dining", ["espresso maker", "cappuccino machine"], ["stainless steel", "plastic"], APPLIANCE, ["15 bar", "20 bar"], (99, 799), ["coffee maker"]),
    _t("electric kettle", "Kitchen & Dining", ["electric water kettle", "tea kettle"], ["stainless steel", "glass", "plastic"], APPLIANCE, ["1.0 l", "1.7 l"], (19, 119), ["coffee maker"]),
    _t("toaster", "Kitchen & Dining", ["bread toaster"], ["stainless steel", "plastic"], APPLIANCE, ["2-slice", "4-slice"], (24, 149), ["toaster oven"]),
    _t("toaster oven", "Kitchen & Dining", ["countertop oven"], ["stainless steel"], APPLIANCE, ["4-slice", "6-slice"], (59, 299), ["toaster", "air fryer"]),
    _t("air fryer", "Kitchen & Dining", ["airfryer", "air fryer oven"], ["plastic", "stainless steel"], APPLIANCE, ["4 qt.", "5.8 qt.", "8 qt."], (49, 229), ["toaster oven"]),
    _t("blender", "Kitchen & Dining", ["countertop blender", "smoothie blender"], ["plastic", "glass"], APPLIANCE, ["48 oz.", "64 oz.", "72 oz."], (39, 449), ["food processor"]),
    _t("food processor", "Kitchen & Dining", ["food chopper"], ["plastic", "stainless steel"], APPLIANCE, ["8-cup", "12-cup", "14-cup"], (49, 299), ["blender", "stand mixer"]),
    _t("stand mixer", "Kitchen & Dining", ["kitchen mixer", "tilt-head mixer"], ["stainless steel", "die-cast metal"], APPLIANCE + ("sage green", "blush pink"), ["4.5 qt.", "5 qt.", "6 qt."], (149, 599), ["food processor"]),
    _t("dining table", "Kitchen & Dining", ["kitchen table", "dinner table"], ["solid wood", "glass", "marble", "engineered wood"], WOODS, ["4-seat", "6-seat", "8-seat"], (199, 1499), ["dining chair"]),
    _t("dining chair", "Kitchen & Dining", ["kitchen chair"], ["solid wood", "upholstered fabric", "metal", "rattan"], WOODS + ("gray", "beige"), ["set of 2", "set of 4"], (89, 599), ["dining table", "bar stool"]),
    _t("bar stool", "Kitchen & Dining", ["counter stool", "barstool"], ["solid wood", "metal", "faux leather", "rattan"], WOODS, ["24 in.", "26 in.", "30 in."], (59, 349), ["dining chair"]),
    # Lighting
    _t("table lamp", "Lighting", ["bedside lamp"], ["ceramic", "brass", "glass", "wood"], NEUTRALS + ("gold",), ["18 in.", "24 in.", "28 in."], (29, 249), ["floor lamp", "desk lamp"]),
    _t("desk lamp", "Lighting", ["task lamp", "reading lamp"], ["metal", "aluminum", "plastic"], ("black", "white", "silver", "brass"), ["15 in.", "18 in."], (19, 149), ["table lamp"]),
    _t("floor lamp", "Lighting", ["standing lamp"], ["metal", "brass", "wood", "rattan"], ("black", "white", "gold", "natural"), ["58 in.", "64 in.", "72 in."], (49, 349), ["table lamp"]),
    _t("pendant light", "Lighting", ["pendant lamp", "hanging light"], ["glass", "metal", "rattan", "brass"], ("black", "white", "gold", "natural", "clear"), ["8 in.", "12 in.", "16 in."], (39, 399), ["chandelier", "flush mount light"]),
    _t("chandelier", "Lighting", ["chandelier light"], ["crystal", "metal", "brass", "wood"], ("black", "gold", "chrome", "brass"), ["3-light", "5-light", "8-light"], (99, 899), ["pendant light"]),
    _t("ceiling fan", "Lighting", ["ceiling fan with light"], ["metal", "wood", "plastic"], ("white", "matte black", "brushed nickel", "oil-rubbed bronze"), ["42 in.", "52 in.", "60 in."], (89, 549), ["flush mount light"]),
    _t("flush mount light", "Lighting", ["ceiling light", "flush mount ceiling light"], ["glass", "metal", "fabric"], ("white", "black", "brushed nickel", "gold"), ["11 in.", "13 in.", "16 in."], (29, 199), ["ceiling fan", "pendant light"]),
    _t("wall sconce", "Lighting", ["wall light", "sconce"], ["metal", "glass", "brass"], ("black", "gold", "brushed nickel", "white"), ["1-light", "2-light"], (29, 199), ["vanity light"]),
    _t("vanity light", "Lighting", ["bathroom light", "vanity light bar"], ["metal", "glass"], FINISHES, ["2-light", "3-light", "4-light"], (39, 299), ["wall sconce"]),
    _t("led bulb", "Lighting", ["light bulb", "led light bulb"], [], ("soft white", "daylight", "bright white"), ["60w equivalent", "75w equivalent", "100w equivalent"], (4, 39), []),
    _t("string lights", "Lighting", ["fairy lights", "twinkle lights"], ["copper wire", "plastic"], ("warm white", "multicolor", "cool white"), ["33 ft.", "48 ft.", "100 ft."], (12, 79), []),
    # Decor
    _t("area rug", "Decor", ["rug", "living room rug"], ["wool", "jute", "polypropylene", "cotton", "viscose"], NEUTRALS + BOLD, ["5 ft. x 8 ft.", "8 ft. x 10 ft.", "9 ft. x 12 ft."], (79, 999), ["runner rug", "outdoor rug"]),
    _t("runner rug", "Decor", ["hallway runner", "rug runner"], ["wool", "jute", "polypropylene", "cotton"], NEUTRALS + BOLD, ["2 ft. x 6 ft.", "2 ft. x 8 ft.", "2 ft. x 10 ft."], (39, 299), ["area rug"]),
    _t("curtains", "Decor", ["drapes", "curtain panels", "window curtains"], ["linen", "velvet", "cotton", "blackout polyester"], NEUTRALS + BOLD, ["52 in. x 84 in.", "52 in. x 96 in.", "52 in. x 108 in."], (19, 149), ["curtain rod", "blinds"]),
    _t("curtain rod", "Decor", ["drapery rod"], ["metal", "wood"], FINISHES, ["28-48 in.", "48-84 in.", "72-144 in."], (14, 99), ["curtains"]),
    _t("blinds", "Decor", ["window blinds"], ["faux wood", "aluminum", "vinyl", "bamboo"], ("white", "black", "natural", "gray"), ["23 in. x 64 in.", "35 in. x 64 in.", "47 in. x 64 in."], (19, 129), ["curtains"]),
    _t("wall mirror", "Decor", ["decorative mirror", "hanging mirror"], ["metal frame", "wood frame", "rattan", "frameless glass"], ("gold", "black", "natural", "silver"), ["24 in.", "30 in.", "36 in."], (49, 399), ["vanity mirror", "floor mirror"]),
    _t("floor mirror", "Decor", ["full length mirror", "standing mirror"], ["metal frame", "wood frame"], ("gold", "black", "natural", "white"), ["22 in. x 65 in.", "24 in. x 70 in."], (79, 449), ["wall mirror"]),
    _t("throw pillow", "Decor", ["decorative pillow", "accent pillow", "cushion"], ["velvet", "linen", "cotton", "faux fur", "boucle"], NEUTRALS + BOLD, ["18 in. x 18 in.", "20 in. x 20 in.", "12 in. x 20 in."], (12, 69), ["throw blanket", "pillow"]),
    _t("vase", "Decor", ["flower vase"], ["ceramic", "glass", "stoneware"], ("white", "black", "clear", "terracotta", "sage green"), ["8 in.", "12 in.", "16 in."], (14, 129), ["planter"]),
    _t("wall clock", "Decor", ["clock"], ["metal", "wood", "glass"], ("black", "gold", "natural", "white"), ["12 in.", "16 in.", "24 in."], (19, 149), []),
    _t("picture frame", "Decor", ["photo frame"], ["wood", "metal", "acrylic"], ("black", "white", "gold", "natural"), ["4 in. x 6 in.", "5 in. x 7 in.", "8 in. x 10 in."], (9, 49), []),
    _t("candle", "Decor", ["scented candle", "jar candle"], ["soy wax", "beeswax", "coconut wax"], ("white", "ivory", "sage green", "amber"), ["8 oz.", "14 oz.", "3-wick"], (12, 59), []),
    # Outdoor and garden
    _t("patio chair", "Outdoor & Garden", ["outdoor chair", "lawn chair"], ["teak", "aluminum", "resin wicker", "steel"], ("natural", "gray", "black", "white", "brown"), ["single", "set of 2", "set of 4"], (59, 499), ["adirondack chair", "patio dining set"]),
    _t("adirondack chair", "Outdoor & Garden", ["muskoka chair"], ["recycled plastic", "cedar", "acacia wood"], ("white", "navy blue", "natural", "gray", "teal"), ["standard", "folding"], (99, 399), ["patio chair"]),
    _t("patio dining set", "Outdoor & Garden", ["outdoor dining set", "patio table and chairs"], ["aluminum", "teak", "resin wicker", "steel"], ("black", "gray", "natural", "brown"), ["5-piece", "7-piece", "9-piece"], (399, 2499), ["patio chair"]),
    _t("patio umbrella", "Outdoor & Garden", ["market umbrella", "outdoor umbrella"], ["olefin", "polyester", "acrylic"], ("beige", "navy blue", "terracotta", "gray", "teal"), ["7.5 ft.", "9 ft.", "11 ft."], (59, 399), []),
    _t("outdoor rug", "Outdoor & Garden", ["patio rug", "indoor outdoor rug"], ["polypropylene", "recycled plastic"], NEUTRALS + BOLD, ["5 ft. x 7 ft.", "6 ft. x 9 ft.", "8 ft. x 10 ft."], (39, 299), ["area rug"]),
    _t("planter", "Outdoor & Garden", ["flower pot", "plant pot"], ["ceramic", "clay", "resin", "concrete", "fiberglass"], ("white", "black", "terracotta", "gray", "sage green"), ["8 in.", "12 in.", "16 in.", "24 in."], (14, 199), ["vase", "raised garden bed"]),
    _t("raised garden bed", "Outdoor & Garden", ["garden bed", "planter box"], ["cedar", "galvanized steel", "composite"], ("natural", "gray", "black"), ["2 ft. x 8 ft.", "4 ft. x 4 ft.", "4 ft. x 8 ft."], (49, 299), ["planter"]),
    _t("garden hose", "Outdoor & Garden", ["water hose", "hose"], ["rubber", "vinyl", "expandable latex"], ("green", "black", "blue"), ["25 ft.", "50 ft.", "100 ft."], (19, 99), ["hose nozzle"]),
    _t("hose nozzle", "Outdoor & Garden", ["spray nozzle", "garden hose nozzle"], ["metal", "zinc", "plastic"], ("green", "black", "silver"), ["7-pattern", "10-pattern"], (8, 39), ["garden hose"]),
    _t("gas grill", "Outdoor & Garden", ["propane grill", "bbq grill"], ["stainless steel", "cast iron", "porcelain-coated steel"], ("black", "silver"), ["2-burner", "3-burner", "4-burner"], (199, 1299), ["charcoal grill"]),
    _t("charcoal grill", "Outdoor & Garden", ["kettle grill"], ["porcelain-coated steel", "cast iron", "stainless steel"], ("black", "red", "silver"), ["18 in.", "22 in.", "26 in."], (79, 499), ["gas grill"]),
    _t("fire pit", "Outdoor & Garden", ["outdoor fire pit", "firepit"], ["steel", "cast iron", "stone", "concrete"], ("black", "gray", "bronze"), ["24 in.", "30 in.", "36 in."], (99, 799), []),
    # Tools and hardware
    _t("cordless drill", "Tools & Hardware", ["drill driver", "power drill", "cordless drill driver"], [], ("yellow", "red", "blue", "black", "orange"), ["12v", "18v", "20v max"], (59, 249), ["impact driver", "hammer drill"]),
    _t("impact driver", "Tools & Hardware", ["cordless impact driver"], [], ("yellow", "red", "blue", "black", "orange"), ["12v", "18v", "20v max"], (79, 279), ["cordless drill"]),
    _t("hammer drill", "Tools & Hardware", ["cordless hammer drill"], [], ("yellow", "red", "blue", "black", "orange"), ["18v", "20v max"], (99, 329), ["cordless drill"]),
    _t("circular saw", "Tools & Hardware", ["circ saw"], [], ("yellow", "red", "blue", "black"), ["6-1/2 in.", "7-1/4 in."], (59, 299), ["miter saw", "jigsaw"]),
    _t("miter saw", "Tools & Hardware", ["chop saw", "compound miter saw"], [], ("yellow", "red", "blue", "black"), ["10 in.", "12 in."], (149, 699), ["circular saw"]),
    _t("jigsaw", "Tools & Hardware", ["jig saw"], [], ("yellow", "red", "blue", "black"), ["corded", "cordless"], (49, 229), ["circular saw"]),
    _t("claw hammer", "Tools & Hardware", ["hammer", "framing hammer"], ["steel", "fiberglass", "hickory"], ("black", "yellow", "red"), ["16 oz.", "20 oz.", "22 oz."], (12, 59), []),
    _t("screwdriver set", "Tools & Hardware", ["screwdrivers"], ["chrome vanadium steel", "s2 steel"], ("black", "yellow", "red", "blue"), ["6-piece", "10-piece", "20-piece"], (14, 79), ["socket set"]),
    _t("socket set", "Tools & Hardware", ["socket wrench set", "ratchet set"], ["chrome vanadium steel"], ("silver", "black"), ["40-piece", "100-piece", "200-piece"], (39, 299), ["wrench set", "screwdriver set"]),
    _t("wrench set", "Tools & Hardware", ["spanner set", "combination wrench set"], ["chrome vanadium steel"], ("silver", "black"), ["10-piece", "16-piece", "22-piece"], (29, 199), ["socket set"]),
    _t("tool box", "Tools & Hardware", ["toolbox", "tool chest"], ["steel", "plastic", "aluminum"], ("red", "black", "yellow", "blue"), ["16 in.", "22 in.", "26 in."], (19, 299), []),
    _t("tape measure", "Tools & Hardware", ["measuring tape"], [], ("yellow", "black", "orange"), ["16 ft.", "25 ft.", "35 ft."], (9, 39), []),
    _t("step ladder", "Tools & Hardware", ["stepladder", "ladder"], ["aluminum", "fiberglass", "steel"], ("silver", "orange", "yellow"), ["2-step", "3-step", "6 ft.", "8 ft."], (39, 299), ["extension ladder"]),
    _t("extension ladder", "Tools & Hardware", ["extendable ladder"], ["aluminum", "fiberglass"], ("silver", "orange", "yellow"), ["16 ft.", "24 ft.", "28 ft."], (149, 499), ["step ladder"]),
    _t("wet dry vacuum", "Tools & Hardware", ["shop vac", "shop vacuum"], ["plastic", "stainless steel"], ("yellow", "red", "black"), ["5 gal.", "12 gal.", "16 gal."], (59, 299), ["vacuum cleaner"]),
    # Appliances and home comfort
    _t("vacuum cleaner", "Appliances", ["vacuum", "upright vacuum"], [], ("gray", "red", "purple", "black"), ["bagless", "bagged"], (99, 599), ["robot vacuum", "stick vacuum"]),
    _t("robot vacuum", "Appliances", ["robotic vacuum", "robot vacuum cleaner"], [], ("black", "white", "gray"), ["standard", "self-emptying"], (149, 999), ["vacuum cleaner"]),
    _t("stick vacuum", "Appliances", ["cordless stick vacuum", "cordless vacuum"], [], ("gray", "red", "purple", "black"), ["standard", "pet"], (99, 699), ["vacuum cleaner"]),
    _t("air purifier", "Appliances", ["air cleaner", "hepa air purifier"], [], ("white", "black", "gray"), ["300 sq. ft.", "500 sq. ft.", "1000 sq. ft."], (59, 499), ["humidifier", "dehumidifier"]),
    _t("humidifier", "Appliances", ["cool mist humidifier"], [], ("white", "black", "gray"), ["1 gal.", "2 gal.", "4 gal."], (29, 199), ["dehumidifier", "air purifier"]),
    _t("dehumidifier", "Appliances", ["moisture absorber machine"], [], ("white", "black", "gray"), ["22 pint", "35 pint", "50 pint"], (129, 399), ["humidifier"]),
    _t("space heater", "Appliances", ["portable heater", "electric heater"], ["ceramic", "oil-filled", "infrared"], ("black", "white", "gray"), ["750w", "1500w"], (29, 199), ["tower fan"]),
    _t("tower fan", "Appliances", ["oscillating tower fan"], [], ("black", "white", "gray"), ["36 in.", "42 in."], (39, 179), ["pedestal fan", "space heater"]),
    _t("pedestal fan", "Appliances", ["standing fan"], [], ("black", "white", "silver"), ["16 in.", "18 in."], (29, 129), ["tower fan"]),
    _t("window air conditioner", "Appliances", ["window ac", "window unit"], [], ("white",), ["6,000 btu", "8,000 btu", "12,000 btu"], (179, 599), ["portable air conditioner"]),
    _t("portable air conditioner", "Appliances", ["portable ac"], [], ("white", "black"), ["8,000 btu", "10,000 btu", "14,000 btu"], (279, 699), ["window air conditioner"]),
    # Storage and organisation
    _t("storage bin", "Storage & Organization", ["storage box", "storage container", "tote"], ["plastic", "fabric", "canvas"], ("clear", "gray", "white", "black", "beige"), ["12 qt.", "32 qt.", "64 qt."], (9, 49), ["storage basket", "cube storage organizer"]),
    _t("storage basket", "Storage & Organization", ["woven basket", "basket"], ["seagrass", "wicker", "cotton rope", "water hyacinth"], ("natural", "white", "gray", "black"), ["small", "medium", "large"], (14, 69), ["storage bin", "laundry hamper"]),
    _t("laundry hamper", "Storage & Organization", ["clothes hamper", "laundry basket"], ["cotton", "bamboo", "wicker", "plastic"], ("white", "gray", "natural", "black"), ["60 l", "90 l"], (19, 89), ["storage basket"]),
    _t("shoe rack", "Storage & Organization", ["shoe organizer", "shoe shelf"], ["bamboo", "metal", "engineered wood"], ("natural", "black", "white"), ["2-tier", "3-tier", "5-tier"], (19, 99), ["coat rack"]),
    _t("coat rack", "Storage & Organization", ["coat stand", "hall tree"], ["metal", "solid wood", "bamboo"], ("black", "natural", "white", "walnut"), ["freestanding", "wall-mounted"], (29, 199), ["wall hooks", "shoe rack"]),
    _t("wall hooks", "Storage & Organization", ["coat hooks", "wall hook rack"], ["metal", "wood", "brass"], ("black", "gold", "natural", "white"), ["3-hook", "5-hook"], (9, 49), ["coat rack"]),
    _t("closet organizer", "Storage & Organization", ["closet system"], ["engineered wood", "wire", "metal"], ("white", "espresso", "gray"), ["4 ft.", "6 ft.", "8 ft."], (79, 599), ["shelving unit"]),
    _t("shelving unit", "Storage & Organization", ["storage shelves", "garage shelving", "wire shelving"], ["steel", "chrome wire", "plastic", "solid wood"], ("black", "silver", "white"), ["4-shelf", "5-shelf"], (49, 299), ["bookshelf", "closet organizer"]),
    _t("cube storage organizer", "Storage & Organization", ["cube organizer", "cubby shelf"], ["engineered wood", "solid wood"], ("white", "black", "espresso", "natural"), ["4-cube", "6-cube", "9-cube"], (39, 199), ["bookshelf", "storage bin"]),
)


def _validate() -> None:
    names = [t.name for t in PRODUCT_TYPES]
    if len(set(names)) != len(names):
        raise AssertionError("duplicate product type names in the taxonomy")
    known = set(names)
    for product_type in PRODUCT_TYPES:
        if product_type.department not in BRANDS:
            raise AssertionError(f"{product_type.name}: department {product_type.department!r} has no brands")
        for other in product_type.related:
            if other not in known or other == product_type.name:
                raise AssertionError(f"{product_type.name}: unknown related type {other!r}")
        if product_type.price[0] <= 0 or product_type.price[0] > product_type.price[1]:
            raise AssertionError(f"{product_type.name}: bad price range {product_type.price}")


_validate()
