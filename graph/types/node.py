import strawberry


@strawberry.interface(description="An object with a server id; `node(id:)` fetches any of them.")
class Node:
    id: strawberry.ID
