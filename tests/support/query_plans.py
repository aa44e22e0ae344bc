"""MongoDB's explain() plans, read for which indexes a query uses."""


def index_names(plan):
    """Every index an explain() plan scans, wherever it sits in the stage tree."""
    if isinstance(plan, dict):
        found = {plan["indexName"]} if plan.get("stage") in {"IXSCAN", "COUNT_SCAN"} and "indexName" in plan else set()
        return found.union(*(index_names(value) for value in plan.values()))
    if isinstance(plan, list):
        return set().union(*(index_names(value) for value in plan))
    return set()


def collection_scans(plan):
    return "COLLSCAN" in str(plan)
