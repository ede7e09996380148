"""Reports read from a bundle: the HTML page and coverage matrix, Allure results, equivalence of proofs, comparison."""
