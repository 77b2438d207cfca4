"""Auctions over NATS: the IO drivers around the pure cores in ``broker_agents.core.auction``.

``AuctioneerAgent`` serves ``<p>.coord.auction`` and runs whole auctions (announce, bids,
close, award, acknowledgement, settlement) with the state in the ``auctions`` bucket under
compare-and-set; ``BidderAgent`` answers announcements through a strategy hook. Money lives
in the ``accounts`` bucket (``Ledger``), scores in the ``reputation`` bucket
(``ReputationBook``).
"""

from broker_agents.auction.messages import AuctionRequest, AuctionResult

__all__ = ["AuctionRequest", "AuctionResult"]
