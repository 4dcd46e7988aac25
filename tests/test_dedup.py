from peru_sentiment.data.dedup import cross_duplicates, duplicate_groups, first_occurrences
from peru_sentiment.text.normalize import comparison_key


def test_comparison_key_ignores_case_accents_and_spacing():
    assert comparison_key("  Llegó   RÁPIDO ") == comparison_key("llego rapido")


def test_first_occurrences_points_each_duplicate_to_a_kept_text(params):
    texts = [
        "el pedido llegó frío y tarde, el motorizado no encontraba mi casa en Miraflores",
        "EL PEDIDO LLEGO FRIO Y TARDE, el motorizado no encontraba mi casa en Miraflores",  # exact after key
        "el pedido llegó frío y tarde, el motorizado no encontraba mi casa en Miraflores!!",  # near
        "excelente atención, el ceviche buenazo y llegó al toque",
    ]
    assert first_occurrences(texts, params.near_duplicates).tolist() == [-1, 0, 0, -1]


def test_groups_and_cross_duplicates(params):
    near = params.near_duplicates
    texts = [
        "ok",
        "OK",
        "la app se cuelga cuando quiero pagar con tarjeta",
        "la app se cuelga cuando quiero pagar con tarjeta.",
    ]
    groups = duplicate_groups(texts, near)
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[0] != groups[2]
    pairs = cross_duplicates(["Ok", "algo totalmente distinto que nadie escribió"], texts, near)
    assert pairs == [(0, 0)]
