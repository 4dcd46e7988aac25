"""Names shared by every stage: labels, aspects, channels and the feedback columns."""

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LABEL_TO_ID: dict[str, int] = {label: index for index, label in enumerate(LABELS)}

# Aspects of a food-delivery experience that a statement can be about;
# "general" is an overall impression with no specific aspect.
ASPECTS: tuple[str, ...] = (
    "general",
    "delivery_time",
    "food_quality",
    "courier",
    "order_accuracy",
    "app_payment",
    "price_promotions",
    "customer_support",
    "other",
)
# The aspects of the service itself; "other" is an opinion about something else
# (football, weather, traffic) that off-topic posts express.
SERVICE_ASPECTS: tuple[str, ...] = ASPECTS[:-1]
# What an aspect head predicts for each aspect of a text: not mentioned, or mentioned with a polarity.
# The class id of a ground-truth polarity p (-1, 0, 1) is p + 2; a missing value (not mentioned) is 0.
ASPECT_POLARITIES: tuple[str, ...] = ("absent", "negative", "neutral", "positive")
CHANNELS: tuple[str, ...] = ("survey", "app_review", "social_media", "support_chat")
# Kinds of synthetic text that hold no opinion on any aspect (labelled neutral).
NO_OPINION_KINDS: tuple[str, ...] = ("question", "request", "order_status", "promotion", "news", "chit_chat")
LANGUAGES: tuple[str, ...] = ("es", "en", "other")

# Columns every feedback table carries after the import, synthetic or real.
FEEDBACK_COLUMNS: tuple[str, ...] = (
    "feedback_id",
    "text",
    "label",
    "language",
    "region",
    "channel",
    "timestamp",
    "source",
    "source_id",
)

UNKNOWN_REGION = "unknown"
SYNTHETIC_SOURCE = "synthetic"  # the `source` of generated rows; every other source is real feedback


def aspect_column(aspect: str) -> str:
    """Name of the ground-truth polarity column of an aspect in the synthetic data."""
    return f"aspect_{aspect}"


def true_aspect_column(aspect: str) -> str:
    """Name of an aspect's true polarity (``ASPECT_POLARITIES`` name) in the evaluation's test predictions."""
    return f"true_aspect_{aspect}"


def predicted_aspect_column(aspect: str) -> str:
    """Name of an aspect's predicted polarity (``ASPECT_POLARITIES`` name) in the evaluation's test predictions."""
    return f"predicted_aspect_{aspect}"


# The model-selection metric: early stopping, the sweep's objective and the report read it.
MONITOR = "val_macro_f1"
