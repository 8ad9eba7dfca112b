"""The simulated rep decides like a strict rep with hidden preferences."""

from feedback.simulator import RepPreferences, SimulatedRep

REP = SimulatedRep(RepPreferences(max_words=30))


def test_a_draft_meeting_every_preference_is_adopted():
    assert REP.review("We propose a six-week pilot with a 99.9% delivery SLA. It starts on your two busiest lines.").type == "accept"


def test_a_fixable_draft_is_edited_into_shape():
    draft = "Our platform cuts downtime on your lines. We can also give you a 20% discount this quarter."
    response = REP.review(draft)
    assert response.type == "edit"
    final = response.args.args["draft"]
    assert final == f"{REP.preferences.opening} Our platform cuts downtime on your lines."
    assert len(final.split()) <= 30 and not REP.problems(final)


def test_a_draft_breaking_everything_is_rejected_with_the_reasons():
    draft = "We offer a discount free of charge. " + "Great value for everyone. " * 10
    response = REP.review(draft)
    assert response.type == "response"
    assert "does not mention 'pilot'" in response.args and "promises 'discount'" in response.args
