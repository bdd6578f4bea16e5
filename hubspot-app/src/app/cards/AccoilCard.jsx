// HubSpot's entry point for the card: the record context and hubspot.fetch, handed to the card.
import React from "react";
import { hubspot } from "@hubspot/ui-extensions";
import { AccoilCard } from "./AccoilCardView.jsx";
import { BACKEND_URL } from "./config.js";

hubspot.extend(({ context }) => <AccoilCard context={context} fetcher={hubspot.fetch} backendUrl={BACKEND_URL} />);
