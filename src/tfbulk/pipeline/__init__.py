"""The download pipeline, in the order data flows through it: snapshot -> plan -> (state)
-> engine -> fetch over transport -> writer -> checks -> commit into the destination."""
