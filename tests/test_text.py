import pytest

from helpers import ROOT
from peru_sentiment.text.classical import ClassicalCleaner
from peru_sentiment.text.features import surface_features
from peru_sentiment.text.language import LanguageDetector
from peru_sentiment.text.lexicon import EmotionLexicon
from peru_sentiment.text.normalize import normalize_text
from peru_sentiment.text.pii import mask_personal_data
from peru_sentiment.text.prepare import prepare_text


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("escríbanme a maria.quispe+pedidos@gmail.com porfa", "escríbanme a [EMAIL] porfa", "email"),
        ("mi celular es 987654321", "mi celular es [PHONE]", "phone"),
        ("llámenme al 987 654 321 al toque", "llámenme al [PHONE] al toque", "phone"),
        ("whatsapp +51 987654321", "whatsapp [PHONE]", "phone"),
        ("fijo (01) 422-1234", "fijo [PHONE]", "phone"),
        ("mi DNI es 45678912.", "mi DNI es [DNI].", "dni"),
        ("tarjeta 4111 1111 1111 1111 rechazada", "tarjeta [CARD] rechazada", "card"),
        ("card 5500-0000-0000-0004", "card [CARD]", "card"),
    ],
)
def test_personal_data_is_masked(text, expected, kind):
    masked, counts = mask_personal_data(text)
    assert masked == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "pedido #123456 llegó en 35 minutos",
        "pagué S/ 25.90 por 2 hamburguesas",
        "4111 1111 1111 1112 no pasa Luhn",  # 16 digits, not a valid card
        "10/10 de ley",
    ],
)
def test_ordinary_numbers_are_kept(text):
    assert mask_personal_data(text)[0] == text


def test_prepare_text_repairs_then_masks_and_keeps_case_accents_emojis():
    broken = "La comida llegÃ³ frÃ\xada!!  Escriban a yo@mail.pe 😡"
    assert prepare_text(broken)[0] == "La comida llegó fría!! Escriban a [EMAIL] 😡"
    assert normalize_text("BUENÍSIMO\u0000 el\tlomo  ") == "BUENÍSIMO el lomo"


def test_language_detection_on_spanish_and_english():
    detector = LanguageDetector(["es", "en", "pt", "it", "fr"], 0.5)
    spanish = [
        "la comida llegó fría y el motorizado ni se disculpó",
        "qué tal raza, demoró un montón el pedido",
        "el lomo saltado estuvo buenazo, llegó al toque",
        "no me devolvieron la plata del pedido cancelado",
    ]
    english = [
        "the food arrived cold and the driver was rude",
        "great app, super fast delivery, will order again",
        "they charged my card twice and support never answered",
    ]
    assert detector.detect(spanish) == ["es"] * len(spanish)
    assert detector.detect(english) == ["en"] * len(english)
    assert detector.detect(["👍👍", "12345"]) == ["other", "other"]


def test_emotion_score_sign_and_negation(params):
    sources = {
        language: str(ROOT / path) if path != "afinn" else path for language, path in params.preprocess.lexicons.items()
    }
    lexicon = EmotionLexicon(sources)
    assert lexicon.score("todo bacán, el ceviche buenazo 😍", "es") > 0.3
    assert lexicon.score("pésimo servicio, la comida llegó fría, un asco", "es") < -0.3
    assert lexicon.score("the food was great", "en") > 0
    assert lexicon.score("the food was not great", "en") < 0
    assert lexicon.score("pagué sin problemas", "es") > 0
    assert lexicon.score("pedí a las 8", "es") == 0
    assert -1 < lexicon.score("excelente " * 50, "es") < 1


def test_surface_features():
    features = surface_features("QUÉ MAL!! 😡")
    assert features["word_count"] == 3
    assert features["punctuation_count"] == 2
    assert features["uppercase_ratio"] == 1.0
    assert features["emoji_ratio"] == pytest.approx(1 / 9)
    assert features["exclamation_ratio"] == pytest.approx(2 / 9)


def test_classical_cleaning_removes_stopwords_placeholders_and_stems():
    cleaner = ClassicalCleaner(["es", "en"])
    cleaned = cleaner.clean("La comida llegó FRÍAAA y no contestan al [PHONE] 😡", "es")
    assert cleaned.split() == ["com", "fri", "no", "contest", "😡"]
    assert cleaner.clean("The drivers were waiting", "en").split() == ["driver", "wait"]
