"""The rule catalog: every rule version ever added (immutable) and the history of activations."""
