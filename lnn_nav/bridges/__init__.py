"""Bridges from a `PolicyController` to a vehicle (MAVLink) and the camera
sources that feed it frames. Every bridge drives the policy through
`lnn_nav.controller.PolicyController`: there is one closed-loop code path."""
