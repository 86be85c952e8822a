"""The Mistakes page through AppTest: filters, order, pages, and the ?true=&predicted= link,
checked against the shipped model's own predictions."""

from __future__ import annotations

import numpy as np
import pytest

from engine import metrics, registry
from ui.mistakes_view import PER_PAGE

MISTAKES = "pages/5_mistakes.py"


@pytest.fixture
def probabilities(dashboard, mnist):
    """The shipped default-mlp's test-set probabilities, computed outside the app."""
    return registry.load(dashboard.models_dir / "default-mlp").predict_proba(mnist.test_images)


def shown_indices(at) -> list[int]:
    """Test-set indices of the digits in the galleries, in order ('#123: 4 → 9 (87%)')."""
    return [int(caption.split(":")[0][1:]) for image in at.image for caption in image.captions]


def captions(dashboard, at) -> list[str]:
    return [text for text in dashboard.texts(at.caption) if "test digits; showing" in text]


def test_mistakes_lists_every_misread_digit_most_confident_first(dashboard, mnist,
                                                                 probabilities):
    at = dashboard.open(MISTAKES)
    assert dashboard.texts(at.title) == ["Mistakes"]
    wrong = metrics.mistakes(mnist.test_labels, probabilities, correct=False)
    right = metrics.mistakes(mnist.test_labels, probabilities, correct=True)
    # Only the open tab is drawn.
    assert captions(dashboard, at) == [f"{len(wrong):,} test digits; showing {PER_PAGE}."]
    assert shown_indices(at) == list(wrong[:PER_PAGE])
    dashboard.open_tab(at, "m_tab", "Correctly classified")
    assert captions(dashboard, at) == [f"{len(right):,} test digits; showing {PER_PAGE}."]
    assert shown_indices(at) == list(right[:PER_PAGE])
    dashboard.open_tab(at, "m_tab", "Misclassified")
    confidence = probabilities.max(axis=1)[wrong[:PER_PAGE]]
    assert list(confidence) == sorted(confidence, reverse=True)
    first = at.image[0].captions[0]
    index = wrong[0]
    assert first.startswith(f"#{index}: {mnist.test_labels[index]} → "
                            f"{np.argmax(probabilities[index])} ")


def test_filters_order_and_pages_drive_the_gallery(dashboard, mnist, probabilities):
    at = dashboard.open(MISTAKES)
    at.selectbox(key="m_true").select(7).run()
    dashboard.assert_ok(at)
    sevens = metrics.mistakes(mnist.test_labels, probabilities, true_digit=7, correct=False)
    assert captions(dashboard, at)[0].startswith(f"{len(sevens):,} test digits")
    assert dashboard.page_params(at) == {"true": "7"}
    at.radio(key="m_order").set_value("least confident first").run()
    least = metrics.mistakes(mnist.test_labels, probabilities, true_digit=7, correct=False,
                             most_confident_first=False)
    assert shown_indices(at)[:len(least[:PER_PAGE])] == list(least[:PER_PAGE])

    at.selectbox(key="m_true").select("any").run()
    wrong = metrics.mistakes(mnist.test_labels, probabilities, correct=False,
                             most_confident_first=False)
    pages = -(-len(wrong) // PER_PAGE)
    page_box = at.number_input(key="m_page_wrong")
    assert page_box.label == f"Page (of {pages})"
    page_box.set_value(2).run()
    second_page = list(wrong[PER_PAGE:2 * PER_PAGE])
    # The gallery of correct digits follows in the next tab: compare the first tab's share.
    assert shown_indices(at)[:len(second_page)] == second_page
    assert dashboard.page_params(at) == {}


def test_setting_a_filter_back_to_any_sticks_after_a_link(dashboard, mnist, probabilities):
    at = dashboard.open(MISTAKES, query={"true": "4", "predicted": "9"})
    assert at.selectbox(key="m_true").value == 4
    assert at.selectbox(key="m_predicted").value == 9
    pairs = metrics.mistakes(mnist.test_labels, probabilities, true_digit=4,
                             predicted_digit=9, correct=False)
    assert captions(dashboard, at)[0].startswith(f"{len(pairs):,} test digits")
    assert {mnist.test_labels[i] for i in shown_indices(at)} == {4}
    at.selectbox(key="m_true").select("any").run()
    assert at.selectbox(key="m_true").value == "any"
    assert dashboard.page_params(at) == {"predicted": "9"}
    nines = metrics.mistakes(mnist.test_labels, probabilities, predicted_digit=9,
                             correct=False)
    assert captions(dashboard, at)[0].startswith(f"{len(nines):,} test digits")
    at.radio(key="m_order").set_value("least confident first").run()   # any other rerun
    assert at.selectbox(key="m_true").value == "any"


def test_a_link_with_a_bad_digit_is_ignored(dashboard):
    at = dashboard.open(MISTAKES, query={"true": "12", "predicted": "x"})
    assert at.selectbox(key="m_true").value == "any"
    assert at.selectbox(key="m_predicted").value == "any"


def test_a_diagonal_filter_opens_the_correctly_read_tab(dashboard, mnist, probabilities):
    at = dashboard.open(MISTAKES)
    at.selectbox(key="m_true").select(3).run()
    at.selectbox(key="m_predicted").select(3).run()
    # True 3 read as 3 is never a mistake: the page opens the tab of the right ones
    # (as a click on the confusion matrix's diagonal does).
    right = metrics.mistakes(mnist.test_labels, probabilities, true_digit=3,
                             predicted_digit=3, correct=True)
    assert captions(dashboard, at) == [
        f"{len(right):,} test digits; showing {min(len(right), PER_PAGE)}."]


def test_a_filter_without_matches_says_so(dashboard, mnist, probabilities):
    at = dashboard.open(MISTAKES)
    never = [(true, predicted) for true in range(10) for predicted in range(10)
             if true != predicted and not len(metrics.mistakes(
                 mnist.test_labels, probabilities, true_digit=true,
                 predicted_digit=predicted, correct=False))]
    true, predicted = never[0]
    at.selectbox(key="m_true").select(true).run()
    at.selectbox(key="m_predicted").select(predicted).run()
    assert "No test digits match this filter." in dashboard.texts(at.info)
