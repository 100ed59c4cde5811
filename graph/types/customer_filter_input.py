import strawberry


@strawberry.input(name="CustomerFilter", description="Conditions on customers.")
class CustomerFilterInput:
    external_id: str | None = strawberry.field(
        default=None,
        description="Your own id of the customer, exact: the one customer that has it, if any.",
    )
