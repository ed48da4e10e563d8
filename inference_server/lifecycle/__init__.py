"""Model lifecycle: the model repository and registration artefacts, health checks, drift, the feedback
join store, fault drills, and the manager that loads, checks, routes and retires versions."""
